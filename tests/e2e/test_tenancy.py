"""Tenant isolation through the gateway: X-Tenant and Host registration, spoofed headers, approval."""

from typing import Any

import httpx


def _create_patient(gateway: httpx.Client, headers: dict[str, str], name: str) -> int:
    response = gateway.post(
        "/api/patients/",
        json={"name": name, "birthdate": "1980-01-01", "contact_number": "+1 555 010 0000"},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    patient_id: int = response.json()["id"]
    return patient_id


def _patient_names(gateway: httpx.Client, headers: dict[str, str]) -> set[str]:
    response = gateway.get("/api/patients/", headers=headers)
    assert response.status_code == 200
    return {patient["name"] for patient in response.json()["results"]}


def test_tenants_registered_by_header_and_by_host_see_only_their_own_data(
    api: Any, gateway: httpx.Client
) -> None:
    tenant_a = api.create_tenant()
    tenant_b = api.create_tenant()
    _, headers_a = api.tenant_admin(tenant_a)  # through X-Tenant
    user_b = f"host-{tenant_b['schema_name']}"
    by_host = api.register(user_b, {"Host": tenant_b["domain_url"]})
    assert by_host.status_code == 201, by_host.text
    assert by_host.json()["tenant"] == tenant_b["schema_name"]
    headers_b = api.bearer(user_b)

    patient_a = _create_patient(gateway, headers_a, "Alice of A")
    _create_patient(gateway, headers_b, "Bob of B")
    second_b = _create_patient(gateway, headers_b, "Carol of B")

    assert _patient_names(gateway, headers_a) == {"Alice of A"}
    assert _patient_names(gateway, headers_b) == {"Bob of B", "Carol of B"}
    # Ids are per tenant: A's id names A's record, never B's ...
    assert (
        gateway.get(f"/api/patients/{patient_a}/", headers=headers_a).json()["name"] == "Alice of A"
    )
    # ... and an id only B has is a 404 for A, exactly as if it did not exist.
    assert gateway.get(f"/api/patients/{second_b}/", headers=headers_a).status_code == 404
    assert gateway.delete(f"/api/patients/{second_b}/", headers=headers_a).status_code == 404
    assert _patient_names(gateway, headers_b) == {"Bob of B", "Carol of B"}


def test_client_sent_identity_headers_are_ignored(api: Any, gateway: httpx.Client) -> None:
    tenant_a = api.create_tenant()
    tenant_b = api.create_tenant()
    _, headers_a = api.tenant_admin(tenant_a)
    _, headers_b = api.tenant_admin(tenant_b)
    _create_patient(gateway, headers_b, "Secret of B")
    spoofed = {
        **headers_a,
        "X-Tenant": tenant_b["schema_name"],
        "X-User-Id": "1",
        "X_Tenant": tenant_b["schema_name"],
    }
    # The token decides: A's (empty) patient list, not B's.
    assert _patient_names(gateway, spoofed) == set()
    created = _create_patient(gateway, spoofed, "Written by A")
    assert gateway.get(f"/api/patients/{created}/", headers=headers_a).status_code == 200
    assert "Written by A" not in _patient_names(gateway, headers_b)


def test_unknown_x_tenant_on_registration_is_refused(api: Any) -> None:
    response = api.register("lost-soul", {"X-Tenant": "nosuchpractice"})
    assert response.status_code == 400


def test_later_users_wait_for_the_tenant_admin_to_approve_them(
    api: Any, gateway: httpx.Client
) -> None:
    tenant = api.create_tenant()
    _, admin = api.tenant_admin(tenant)
    newcomer = f"staff-{tenant['schema_name']}"
    registered = api.register(newcomer, {"X-Tenant": tenant["schema_name"]})
    assert registered.status_code == 201
    assert registered.json()["is_active"] is False
    assert registered.json()["role"] == "staff"
    pending = gateway.post(
        "/api/auth/login/", json={"username": newcomer, "password": api.password}
    )
    assert pending.status_code == 401

    users = gateway.get("/api/auth/users/", headers=admin).json()["results"]
    user_id = next(user["id"] for user in users if user["username"] == newcomer)
    everyone = gateway.get("/api/auth/users/", headers=api.superuser())
    assert newcomer in {user["username"] for user in everyone.json()["results"]}
    approved = gateway.patch(f"/api/auth/users/{user_id}/", json={"is_active": True}, headers=admin)
    assert approved.status_code == 200, approved.text
    staff = api.bearer(newcomer)
    assert gateway.get("/api/patients/", headers=staff).status_code == 200
    assert gateway.get("/api/auth/users/", headers=staff).status_code == 403
