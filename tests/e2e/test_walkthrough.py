"""The seed walk-through (API-SEED.md) through the gateway: accounts, tokens, clinic CRUD, tenants."""

from typing import Any

import httpx


def test_register_login_refresh_logout(api: Any, gateway: httpx.Client) -> None:
    tenant = api.create_tenant()
    username = f"dr-{tenant['schema_name']}"
    registered = api.register(username, invitation=api.invite(username, tenant))
    assert registered.status_code == 201, registered.text
    body = registered.json()
    assert body["tenant"] == tenant["schema_name"]
    assert body["role"] == "admin"
    assert body["is_active"] is True

    tokens = api.login(username)
    me = gateway.get("/api/auth/me/", headers={"Authorization": f"Bearer {tokens['access']}"})
    assert me.status_code == 200
    assert me.json()["username"] == username

    refreshed = gateway.post("/api/auth/refresh/", json={"refresh": tokens["refresh"]})
    assert refreshed.status_code == 200
    new = refreshed.json()
    assert (
        gateway.get(
            "/api/patients/", headers={"Authorization": f"Bearer {new['access']}"}
        ).status_code
        == 200
    )
    assert gateway.post("/api/auth/logout/", json={"refresh": new["refresh"]}).status_code == 204
    assert gateway.post("/api/auth/refresh/", json={"refresh": new["refresh"]}).status_code == 401
    # Rotation: the first refresh token was spent by the refresh.
    spent = gateway.post("/api/auth/refresh/", json={"refresh": tokens["refresh"]})
    assert spent.status_code == 401


def test_clinic_crud_on_cabinets_patients_consultations(api: Any, gateway: httpx.Client) -> None:
    _, headers = api.tenant_admin(api.create_tenant())

    cabinet = gateway.post(
        "/api/cabinets/",
        json={"name": "Main", "address": "1 Rue de la Paix", "contact_number": "+33 1 23 45 67 89"},
        headers=headers,
    )
    assert cabinet.status_code == 201, cabinet.text
    cabinet_id = cabinet.json()["id"]
    patient = gateway.post(
        "/api/patients/",
        json={
            "name": "Ada Lovelace",
            "birthdate": "1990-12-10",
            "contact_number": "+44 20 7946 0958",
            "email": "ada@example.com",
        },
        headers=headers,
    )
    assert patient.status_code == 201, patient.text
    patient_id = patient.json()["id"]
    consultation = gateway.post(
        "/api/consultations/",
        json={
            "patient": patient_id,
            "cabinet": cabinet_id,
            "date": "2026-01-15T09:30:00Z",
            "diagnosis": "Caries on 36",
            "treatment": "Composite filling",
        },
        headers=headers,
    )
    assert consultation.status_code == 201, consultation.text
    consultation_id = consultation.json()["id"]

    listed = gateway.get("/api/consultations/", headers=headers).json()
    assert listed["count"] == 1
    assert listed["results"][0]["id"] == consultation_id
    assert (
        gateway.get(f"/api/patients/{patient_id}/", headers=headers).json()["name"]
        == "Ada Lovelace"
    )

    put = gateway.put(
        f"/api/cabinets/{cabinet_id}/",
        json={
            "name": "Annex",
            "address": "2 Rue de la Paix",
            "contact_number": "+33 1 98 76 54 32",
        },
        headers=headers,
    )
    assert put.status_code == 200
    assert put.json()["name"] == "Annex"
    patched = gateway.patch(
        f"/api/consultations/{consultation_id}/", json={"treatment": "Crown"}, headers=headers
    )
    assert patched.status_code == 200
    assert patched.json()["treatment"] == "Crown"

    # A referenced patient cannot go: clinical records are never deleted as a side effect.
    assert gateway.delete(f"/api/patients/{patient_id}/", headers=headers).status_code == 409
    assert (
        gateway.delete(f"/api/consultations/{consultation_id}/", headers=headers).status_code == 204
    )
    assert gateway.delete(f"/api/patients/{patient_id}/", headers=headers).status_code == 204
    assert gateway.delete(f"/api/cabinets/{cabinet_id}/", headers=headers).status_code == 204
    assert gateway.get(f"/api/patients/{patient_id}/", headers=headers).status_code == 404


def test_tenants_are_managed_by_the_superuser_only(api: Any, gateway: httpx.Client) -> None:
    root = api.superuser()
    tenant = api.create_tenant()
    assert gateway.get(f"/api/tenants/{tenant['id']}/", headers=root).status_code == 200
    patched = gateway.patch(
        f"/api/tenants/{tenant['id']}/", json={"name": "Renamed practice"}, headers=root
    )
    assert patched.status_code == 200
    assert patched.json()["name"] == "Renamed practice"
    renamed = gateway.patch(
        f"/api/tenants/{tenant['id']}/", json={"schema_name": "other"}, headers=root
    )
    assert renamed.status_code == 400

    _, tenant_admin = api.tenant_admin(tenant)
    assert gateway.get("/api/tenants/", headers=tenant_admin).status_code == 403
    assert gateway.get("/api/tenants/").status_code == 401

    assert gateway.delete(f"/api/tenants/{tenant['id']}/", headers=root).status_code == 204
    assert gateway.get(f"/api/tenants/{tenant['id']}/", headers=root).status_code == 404
