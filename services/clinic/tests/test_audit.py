"""The audit trail (DESIGN.md section 6b): every access to clinical data is recorded - who,
when, what, the outcome - in the tenant's own append-only trail, readable by its admins only."""

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from clinic.settings import ClinicSettings
from common.testing import TestSigner
from sqlalchemy import create_engine, text

Json = dict[str, Any]
PATIENT = {"name": "Ada Lovelace", "birthdate": "1990-12-10", "contact_number": "+44 20 7946"}
CABINET = {"name": "Cabinet A", "address": "1 Main St", "contact_number": "+33 1 23 45 67"}
CONSULTATION = {"date": "2024-03-01T09:30:00Z", "diagnosis": "Caries", "treatment": "Filling"}
FIELDS = {
    "id",
    "at",
    "user_id",
    "username",
    "action",
    "resource",
    "resource_id",
    "resource_ids",
    "request_id",
    "client_ip",
    "status",
}


def _user(
    server: str, signer: TestSigner, tenant: str, *, role: str = "admin", user_id: int = 7
) -> httpx.Client:
    headers = signer.auth_header(tenant=tenant, role=role, user_id=user_id, username=f"u{user_id}")
    return httpx.Client(base_url=server, headers=headers, timeout=30, trust_env=False)


def events(
    admin: httpx.Client,
    *,
    expect: int = 0,
    until: Callable[[list[Json]], bool] = lambda _: True,
    **params: Any,
) -> list[Json]:
    """The trail as the admin reads it; waits (about a second: reads are flushed in batches)
    for ``expect`` events and ``until`` to hold."""
    deadline = time.monotonic() + 5
    while True:
        response = admin.get("/api/audit-events/", params={"page_size": 200, **params})
        assert response.status_code == 200, response.text
        found: list[Json] = response.json()["results"]
        if (len(found) >= expect and until(found)) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.fixture
def tenant(new_tenant: Callable[[], str]) -> str:
    return new_tenant()


@pytest.fixture
def dentist(server: str, signer: TestSigner, tenant: str) -> httpx.Client:
    return _user(server, signer, tenant, role="staff", user_id=7)


@pytest.fixture
def admin(server: str, signer: TestSigner, tenant: str) -> httpx.Client:
    return _user(server, signer, tenant, role="admin", user_id=1)


def test_every_action_on_a_record_is_recorded_with_who_when_and_how_it_ended(
    dentist: httpx.Client, admin: httpx.Client
) -> None:
    created = dentist.post("/api/patients/", json=PATIENT, headers={"X-Request-ID": "req-create"})
    assert created.status_code == 201
    patient = created.json()
    url = f"/api/patients/{patient['id']}/"
    assert dentist.get(url, headers={"X-Request-ID": "req-view"}).status_code == 200
    assert dentist.put(url, json={**PATIENT, "name": "Ada King"}).status_code == 200
    assert dentist.patch(url, json={"name": "Ada Byron"}).status_code == 200
    assert dentist.get("/api/patients/", params={"search": "byron"}).status_code == 200
    assert dentist.delete(url).status_code == 204
    assert dentist.get(url).status_code == 404

    trail = events(admin, expect=7, user_id=7)
    summary = [(e["action"], e["resource"], e["resource_id"], e["status"]) for e in trail]
    pid = patient["id"]
    # Newest first.
    assert summary == [
        ("view", "patient", pid, 404),
        ("delete", "patient", pid, 204),
        ("list", "patient", None, 200),
        ("update", "patient", pid, 200),
        ("update", "patient", pid, 200),
        ("view", "patient", pid, 200),
        ("create", "patient", pid, 201),
    ]
    for event in trail:
        assert set(event) == FIELDS
        assert (event["user_id"], event["username"]) == (7, "u7")
        assert event["client_ip"] == "127.0.0.1"
        assert event["resource_ids"] == [pid]
    by_request = {event["request_id"]: event["action"] for event in trail}
    assert by_request["req-create"] == "create"
    assert by_request["req-view"] == "view"


def test_a_list_records_the_ids_it_returned_and_never_the_search_term(
    dentist: httpx.Client, admin: httpx.Client
) -> None:
    shown = [dentist.post("/api/patients/", json=PATIENT).json()["id"] for _ in range(3)]
    dentist.post("/api/patients/", json={**PATIENT, "name": "Grace Hopper"})
    listed = dentist.get("/api/patients/", params={"search": "lovelace", "page_size": 2})
    assert listed.status_code == 200
    [event] = events(admin, expect=1, action="list")
    assert event["resource_ids"] == shown[:2]
    assert event["resource_id"] is None
    stored = json.dumps(events(admin, expect=5))
    for secret in ("lovelace", "Lovelace", "Hopper", "Ada", "+44"):
        assert secret not in stored


@pytest.mark.parametrize("resource", ["cabinets", "consultations"])
def test_cabinets_and_consultations_are_audited_too(
    resource: str,
    dentist: httpx.Client,
    admin: httpx.Client,
    make_cabinet: Callable[..., Json],
    make_consultation: Callable[..., Json],
) -> None:
    record = (make_cabinet if resource == "cabinets" else make_consultation)(dentist)
    assert dentist.get(f"/api/{resource}/{record['id']}/").status_code == 200
    noun = resource.removesuffix("s")
    trail = events(admin, expect=2, resource=noun, resource_id=record["id"])
    assert [(e["action"], e["status"]) for e in trail] == [("view", 200), ("create", 201)]


def test_refused_changes_are_recorded_with_their_status(
    dentist: httpx.Client, admin: httpx.Client, make_consultation: Callable[..., Json]
) -> None:
    consultation = make_consultation(dentist)
    patient = consultation["patient"]
    refused = dentist.delete(f"/api/patients/{patient}/")
    assert refused.status_code == 409
    bad = dentist.post(
        "/api/consultations/",
        json={"patient": 999999, "cabinet": consultation["cabinet"], "date": "2024-01-01T10:00Z"}
        | {"diagnosis": "x"},
    )
    assert bad.status_code == 400

    def outcomes(trail: list[Json]) -> set[tuple[str, str, int]]:
        return {(e["action"], e["resource"], e["status"]) for e in trail}

    refusals = {("delete", "patient", 409), ("create", "consultation", 400)}
    trail = events(admin, until=lambda t: refusals <= outcomes(t), user_id=7, after="2000-01-01")
    assert refusals <= outcomes(trail)


def test_who_saw_this_patient_is_one_query(
    server: str, signer: TestSigner, tenant: str, admin: httpx.Client
) -> None:
    first = _user(server, signer, tenant, role="staff", user_id=11)
    second = _user(server, signer, tenant, role="staff", user_id=12)
    patient = first.post("/api/patients/", json=PATIENT).json()
    other = first.post("/api/patients/", json=PATIENT).json()
    second.get(f"/api/patients/{patient['id']}/")
    second.get(f"/api/patients/{other['id']}/")
    second.get("/api/patients/")  # a list that showed both
    trail = events(admin, expect=3, resource="patient", resource_id=patient["id"])
    assert [(e["user_id"], e["action"]) for e in trail] == [
        (12, "list"),
        (12, "view"),
        (11, "create"),
    ]
    assert all(patient["id"] in e["resource_ids"] for e in trail)


def test_who_opened_a_record_leaves_out_the_lists_that_showed_it(
    dentist: httpx.Client, admin: httpx.Client
) -> None:
    # A fresh tenant: cabinet 1, patient 1 and consultation 1, three records with one id.
    cabinet = dentist.post("/api/cabinets/", json=CABINET).json()
    patient = dentist.post("/api/patients/", json=PATIENT).json()
    consultation = {"patient": patient["id"], "cabinet": cabinet["id"], **CONSULTATION}
    consultation = dentist.post("/api/consultations/", json=consultation).json()
    assert cabinet["id"] == patient["id"] == consultation["id"]
    record = patient["id"]
    dentist.get(f"/api/patients/{record}/")
    dentist.get(f"/api/consultations/{record}/")
    dentist.get("/api/patients/")  # a list that showed the patient
    opened = events(admin, expect=1, resource="patient", resource_id=record, action="view")
    assert [(e["action"], e["resource"], e["resource_id"]) for e in opened] == [
        ("view", "patient", record)
    ]
    views = events(admin, expect=2, resource_id=record, action="view")
    assert sorted(e["resource"] for e in views) == ["consultation", "patient"]
    listed = events(admin, expect=1, resource="patient", resource_id=record, action="list")
    assert [(e["action"], e["resource_ids"]) for e in listed] == [("list", [record])]


def test_the_last_day_there_is_bounds_nothing(dentist: httpx.Client, admin: httpx.Client) -> None:
    # Its end is past every date-time (adding a day to it was a 500).
    dentist.get("/api/patients/")
    assert events(admin, expect=1, resource="patient", before="9999-12-31")


def test_an_id_no_record_can_have_finds_no_event(admin: httpx.Client) -> None:
    for action in ("", "view"):
        params = {"resource_id": "99999999999", "user_id": "99999999999", "action": action}
        response = admin.get("/api/audit-events/", params=params)
        assert response.status_code == 200, response.text
        assert response.json()["count"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"resource": "tenant"}, "resource"),
        ({"action": "drop"}, "action"),
        ({"resource_id": "³"}, "resource_id"),
        ({"user_id": "abc"}, "user_id"),
        ({"after": "yesterday"}, "after"),
        ({"before": "2024-02-30"}, "before"),
        ({"before": "9999-12-31T23:00:00-05:00"}, "before"),  # year 10000 in UTC
    ],
)
def test_a_bad_filter_is_a_400_on_that_parameter(
    admin: httpx.Client, params: dict[str, str], field: str
) -> None:
    response = admin.get("/api/audit-events/", params=params)
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_the_trail_is_for_the_tenants_admins_only(
    server: str, signer: TestSigner, tenant: str, dentist: httpx.Client, admin: httpx.Client
) -> None:
    dentist.post("/api/patients/", json=PATIENT)
    assert dentist.get("/api/audit-events/").status_code == 403
    assert httpx.get(f"{server}/api/audit-events/").status_code == 401
    assert len(events(admin, expect=1)) == 1
    # Another practice's admin sees its own (empty) trail, never this one.
    stranger = _user(server, signer, f"t_{uuid.uuid4().hex[:12]}", role="admin")
    assert stranger.get("/api/audit-events/").json()["count"] == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_the_api_cannot_change_the_trail(admin: httpx.Client, method: str) -> None:
    admin.post("/api/patients/", json=PATIENT)
    [event] = events(admin, expect=1)
    assert admin.request(method, "/api/audit-events/", json={}).status_code == 405
    assert admin.request(method, f"/api/audit-events/{event['id']}/", json={}).status_code in (
        404,
        405,
    )
    assert events(admin, expect=1) == [event]


def test_the_database_refuses_to_change_or_delete_an_event(
    shared_backend: str,
    shared_database_url: str,
    admin: httpx.Client,
    tenant: str,
    sqlite_tenant_file: Callable[[str, str], Path],
) -> None:
    admin.post("/api/patients/", json=PATIENT)
    [event] = events(admin, expect=1)
    if shared_backend == "sqlite":
        engine = create_engine(f"sqlite:///{sqlite_tenant_file(shared_database_url, tenant)}")
        table = "audit_event"
        attempts = [f"UPDATE {table} SET status = 200", f"DELETE FROM {table}"]
    else:
        engine = create_engine(shared_database_url)
        table = f'"{tenant}".audit_event'
        attempts = [
            f"UPDATE {table} SET username = 'someone else'",
            f"DELETE FROM {table}",
            f"TRUNCATE {table}",
        ]
    try:
        for statement in attempts:
            with pytest.raises(Exception, match="append-only"), engine.begin() as connection:
                connection.execute(text(statement))
    finally:
        engine.dispose()
    assert events(admin, expect=1) == [event]


def test_reads_are_written_at_a_clean_shutdown(
    own_server: Callable[[str], Any],
    database_url: Callable[[str], str],
    signer: TestSigner,
    make_patient: Callable[..., Json],
) -> None:
    url = database_url("clinic")
    tenant = f"t_{uuid.uuid4().hex[:12]}"
    headers = signer.auth_header(tenant=tenant, role="admin")
    with own_server(url) as base, httpx.Client(base_url=base, headers=headers) as client:
        patient = make_patient(client)
        assert client.get(f"/api/patients/{patient['id']}/").status_code == 200
        # Stopped at once: the view is still in the buffer.
    with own_server(url) as base, httpx.Client(base_url=base, headers=headers) as client:
        trail = client.get("/api/audit-events/").json()["results"]
    assert [e["action"] for e in trail] == ["view", "create"]


def test_a_failing_flush_turns_health_red_and_recovers(
    backend: str,
    database_url: Callable[[str], str],
    own_server: Callable[..., Any],
    tcp_proxy: Callable[[str], Any],
    signer: TestSigner,
    make_patient: Callable[..., Json],
) -> None:
    if backend != "postgresql":
        pytest.skip("a database server that goes away (SQLite is a file in the process)")
    proxy, url = tcp_proxy(database_url("clinic"))
    headers = signer.auth_header(tenant="t_flush", role="admin")
    # A slow flush: the view is still buffered when the database goes away.
    with (
        own_server(url, audit_flush_interval=3.0) as base,
        httpx.Client(base_url=base, headers=headers) as client,
    ):
        patient = make_patient(client)
        assert client.get(f"/api/patients/{patient['id']}/").status_code == 200
        proxy.stop()
        deadline = time.monotonic() + 15
        while True:
            checks = client.get("/health/").json()["checks"]
            if checks["audit"]["status"] == "fail" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert checks["audit"] == {"status": "fail", "output": "RuntimeError"}
        failures = [
            float(line.rsplit(" ", 1)[1])
            for line in client.get("/metrics/").text.splitlines()
            if line.startswith("clinic_audit_flush_failures_total ")
        ]
        assert failures
        assert failures[0] >= 1
        proxy.start()
        deadline = time.monotonic() + 15
        while client.get("/health/").status_code != 200:
            assert time.monotonic() < deadline, "the trail never caught up"
            time.sleep(0.2)
        trail = client.get("/api/audit-events/").json()["results"]
    assert [e["action"] for e in trail] == ["view", "create"]


def test_audit_metrics_count_events_and_show_the_lag(
    dentist: httpx.Client, admin: httpx.Client
) -> None:
    def value(name: str) -> float:
        for line in admin.get("/metrics/").text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = value('clinic_audit_events_total{how="with_change"}')
    dentist.post("/api/patients/", json=PATIENT)
    assert value('clinic_audit_events_total{how="with_change"}') >= before + 1
    assert value("clinic_audit_flush_lag_seconds") >= 0


@pytest.mark.parametrize("interval", [0, -1, 11])
def test_the_flush_interval_is_bounded(interval: float) -> None:
    with pytest.raises(ValueError, match="audit_flush_interval"):
        ClinicSettings(audit_flush_interval=interval)


def test_an_export_is_an_audit_event(dentist: httpx.Client, admin: httpx.Client) -> None:
    patient = dentist.post("/api/patients/", json=PATIENT).json()
    exported = dentist.get(f"/api/patients/{patient['id']}/export/")
    assert exported.status_code == 200
    [event] = events(admin, expect=1, action="export")
    assert (event["resource"], event["resource_id"], event["status"]) == (
        "patient",
        patient["id"],
        200,
    )
