"""The audit trail and the FHIR export through the gateway, with real users onboarded by
invitation (DESIGN.md section 6b): every clinical route records its event, and the trail names
the user the token speaks for and the address the gateway saw."""

import time
from typing import Any

import httpx

PATIENT = {"name": "Alice Durand", "birthdate": "1984-03-02", "contact_number": "0612345678"}


def _events(gateway: httpx.Client, headers: dict[str, str], expect: int, **params: Any) -> Any:
    deadline = time.monotonic() + 10
    while True:
        response = gateway.get(
            "/api/audit-events/", params={"page_size": 200, **params}, headers=headers
        )
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        if len(results) >= expect or time.monotonic() > deadline:
            return results
        time.sleep(0.2)


def test_every_clinical_route_records_its_event_through_the_gateway(
    api: Any, gateway: httpx.Client
) -> None:
    tenant = api.create_tenant()
    admin_name, admin = api.tenant_admin(tenant)
    dentist_name = f"staff-{tenant['schema_name']}"
    invitation = api.invite(dentist_name, tenant, role="staff", headers=admin)
    assert api.register(dentist_name, invitation=invitation).status_code == 201
    dentist = api.bearer(dentist_name)

    cabinet = gateway.post(
        "/api/cabinets/",
        json={"name": "Room 1", "address": "1 Rue", "contact_number": "0412345678"},
        headers=dentist,
    ).json()
    patient = gateway.post("/api/patients/", json=PATIENT, headers=dentist).json()
    consultation = gateway.post(
        "/api/consultations/",
        json={
            "patient": patient["id"],
            "cabinet": cabinet["id"],
            "date": "2026-11-26T09:30:00Z",
            "diagnosis": "Caries 36",
        },
        headers=dentist,
    ).json()
    url = f"/api/patients/{patient['id']}/"
    calls = [
        ("GET", url, None, 200),
        ("GET", "/api/patients/", None, 200),
        ("PUT", url, {**PATIENT, "name": "Alice Martin"}, 200),
        ("PATCH", url, {"contact_number": "0698765432"}, 200),
        ("GET", f"{url}export/", None, 200),
        ("DELETE", url, None, 409),  # a consultation still references her
        ("DELETE", f"/api/consultations/{consultation['id']}/", None, 204),
        ("DELETE", url, None, 204),
    ]
    for method, path, body, status in calls:
        response = gateway.request(method, path, json=body, headers=dentist)
        assert response.status_code == status, (method, path, response.text)

    # The staff member cannot read the trail; the practice's admin can.
    assert gateway.get("/api/audit-events/", headers=dentist).status_code == 403
    trail = _events(gateway, admin, expect=11)
    seen = [(e["action"], e["resource"], e["status"]) for e in reversed(trail)]
    assert seen == [
        ("create", "cabinet", 201),
        ("create", "patient", 201),
        ("create", "consultation", 201),
        ("view", "patient", 200),
        ("list", "patient", 200),
        ("update", "patient", 200),
        ("update", "patient", 200),
        ("export", "patient", 200),
        ("delete", "patient", 409),
        ("delete", "consultation", 204),
        ("delete", "patient", 204),
    ]
    for event in trail:
        assert event["username"] == dentist_name
        assert event["client_ip"] == "127.0.0.1"  # the address the gateway saw, not Traefik's
    # "Who saw this patient": one query.
    about = _events(gateway, admin, expect=8, resource="patient", resource_id=patient["id"])
    assert {e["action"] for e in about} == {"create", "view", "list", "update", "export", "delete"}
    assert admin_name not in {e["username"] for e in trail}
