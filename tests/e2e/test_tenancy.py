"""Tenant isolation through the gateway: onboarding by invitation, X-Tenant and Host
registration, spoofed headers, approval, a deleted tenant refused at once."""

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
    _, headers_a = api.tenant_admin(tenant_a)
    _, admin_b = api.tenant_admin(tenant_b)
    user_b = f"host-{tenant_b['schema_name']}"
    by_host = api.register(user_b, {"Host": tenant_b["domain_url"]})
    assert by_host.status_code == 201, by_host.text
    assert by_host.json()["tenant"] == tenant_b["schema_name"]
    assert by_host.json()["is_active"] is False  # B's admin lets them in
    approved = gateway.patch(
        f"/api/auth/users/{by_host.json()['id']}/", json={"is_active": True}, headers=admin_b
    )
    assert approved.status_code == 200, approved.text
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


def test_a_practice_is_onboarded_by_invitation_and_nobody_registers_their_way_to_admin(
    api: Any, gateway: httpx.Client
) -> None:
    """The superuser creates the tenant and invites its admin; the admin invites staff. The
    first stranger to register (by the practice's public domain) is only pending staff."""
    tenant = api.create_tenant()
    stranger = api.register(f"early-{tenant['schema_name']}", {"Host": tenant["domain_url"]})
    owner = f"owner-{tenant['schema_name']}"
    joined = api.register(owner, invitation=api.invite(owner, tenant, role="admin"))
    admin = api.bearer(owner)
    nurse = f"nurse-{tenant['schema_name']}"
    staff_token = api.invite(nurse, tenant, role="staff", headers=admin)
    open_invitations = gateway.get("/api/auth/invitations/", headers=admin)
    nurse_joined = api.register(nurse, invitation=staff_token)
    reused = api.register(f"again-{tenant['schema_name']}", invitation=staff_token)

    assert (stranger.json()["role"], stranger.json()["is_active"]) == ("staff", False)
    assert {k: joined.json()[k] for k in ("tenant", "role", "is_active")} == {
        "tenant": tenant["schema_name"],
        "role": "admin",
        "is_active": True,
    }
    assert open_invitations.status_code == 200
    assert [i["email"] for i in open_invitations.json()["results"]] == [f"{nurse}@example.com"]
    assert "token" not in open_invitations.json()["results"][0]
    assert (nurse_joined.json()["role"], nurse_joined.json()["is_active"]) == ("staff", True)
    assert reused.status_code == 400
    assert reused.json() == {"invitation": ["This invitation has already been used."]}
    assert gateway.get("/api/patients/", headers=api.bearer(nurse)).status_code == 200
    assert gateway.get("/api/auth/invitations/").status_code == 401  # behind ForwardAuth


def test_a_deleted_tenants_users_are_refused_at_once(api: Any, gateway: httpx.Client) -> None:
    """From the moment the DELETE has returned: no login, no refresh, no registration."""
    tenant = api.create_tenant()
    username, _ = api.tenant_admin(tenant)
    tokens = api.login(username)
    invitation = api.invite(f"late-{tenant['schema_name']}", tenant, role="staff")

    deleted = gateway.delete(f"/api/tenants/{tenant['id']}/", headers=api.superuser())

    assert deleted.status_code == 204
    login = gateway.post("/api/auth/login/", json={"username": username, "password": api.password})
    assert login.status_code == 401
    refresh = gateway.post("/api/auth/refresh/", json={"refresh": tokens["refresh"]})
    assert refresh.status_code == 401
    by_header = api.register(f"new-{tenant['schema_name']}", {"X-Tenant": tenant["schema_name"]})
    assert by_header.status_code == 400
    invited = api.register(f"late-{tenant['schema_name']}", invitation=invitation)
    assert invited.status_code == 400
    assert invited.json() == {"tenant": [f'Unknown or inactive tenant "{tenant["schema_name"]}".']}
