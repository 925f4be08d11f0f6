"""Concurrent writes: every create lands once; concurrent updates never mix; a delete racing
a new consultation never orphans it."""

import asyncio
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from clinic import crud
from clinic.audit import Actor, AuditTrail, RequestAudit
from clinic.db import tenant_databases
from clinic.models import CabinetCreate, ConsultationCreate, PatientCreate
from clinic.settings import ClinicSettings
from common.errors import ValidationFailed
from sqlalchemy import text

Json = dict[str, Any]


def _created_total(client: httpx.Client, resource: str) -> float:
    text = client.get("/metrics/").text
    match = re.search(
        rf'^clinic_records_created_total\{{resource="{resource}"\}} (\S+)$', text, re.M
    )
    return float(match.group(1)) if match else 0.0


def test_fifty_concurrent_creates_all_land_and_are_counted(fresh_api: httpx.Client) -> None:
    before = _created_total(fresh_api, "patient")

    def create(i: int) -> httpx.Response:
        return fresh_api.post(
            "/api/patients/",
            json={"name": f"Patient {i}", "birthdate": "2000-01-01", "contact_number": "0123456"},
        )

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(create, range(50)))
    assert [r.status_code for r in responses] == [201] * 50
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 50
    listed = fresh_api.get("/api/patients/", params={"page_size": 200}).json()
    assert listed["count"] == 50
    assert {p["id"] for p in listed["results"]} == ids
    assert _created_total(fresh_api, "patient") - before == 50


def test_two_concurrent_puts_leave_one_of_them_never_a_mix(
    api: httpx.Client, make_cabinet: Callable[..., Json]
) -> None:
    # Each PUT changes a different field relative to the original, so an update that wrote
    # only the fields it saw as changed, without a lock, would leave a mix of both.
    original = {"name": "Original", "address": "Original St", "contact_number": "0100000000"}
    first = {**original, "name": "First"}
    second = {**original, "address": "Second St"}
    cabinet = make_cabinet(api, **original)
    url = f"/api/cabinets/{cabinet['id']}/"
    for _ in range(10):
        assert api.put(url, json=original).status_code == 200
        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(lambda body: api.put(url, json=body), (first, second)))
        assert [r.status_code for r in responses] == [200, 200]
        final = api.get(url).json()
        assert {k: final[k] for k in original} in (first, second)


def test_concurrent_patches_of_different_fields_both_land(
    api: httpx.Client, make_patient: Callable[..., Json]
) -> None:
    patient = make_patient(api)
    url = f"/api/patients/{patient['id']}/"
    for round_ in range(5):
        changes = ({"name": f"Name {round_}"}, {"email": f"e{round_}@example.com"})
        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(lambda body: api.patch(url, json=body), changes))
        assert [r.status_code for r in responses] == [200, 200]
        final = api.get(url).json()
        assert (final["name"], final["email"]) == (f"Name {round_}", f"e{round_}@example.com")


def test_delete_racing_a_new_consultation_never_orphans_it(
    api: httpx.Client, make_patient: Callable[..., Json], make_cabinet: Callable[..., Json]
) -> None:
    cabinet = make_cabinet(api)
    for _ in range(8):
        patient = make_patient(api)

        def delete(patient_id: int = patient["id"]) -> httpx.Response:
            return api.delete(f"/api/patients/{patient_id}/")

        def consult(patient_id: int = patient["id"]) -> httpx.Response:
            return api.post(
                "/api/consultations/",
                json={
                    "patient": patient_id,
                    "cabinet": cabinet["id"],
                    "date": "2024-01-01T10:00:00Z",
                    "diagnosis": "Race",
                },
            )

        with ThreadPoolExecutor(2) as pool:
            deleted, consulted = pool.submit(delete), pool.submit(consult)
            outcome = (deleted.result().status_code, consulted.result().status_code)
        assert outcome in ((204, 400), (409, 201))
        if outcome == (204, 400):  # the error names the field, however the race went
            assert consulted.result().json() == {
                "patient": [f'Invalid pk "{patient["id"]}" - object does not exist.']
            }
        exists = api.get(f"/api/patients/{patient['id']}/").status_code == 200
        assert exists == (outcome == (409, 201))


def test_a_reference_deleted_after_the_transaction_began_is_a_400_on_that_field(
    backend: str, database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """The insert's foreign key catches a patient deleted by another connection after this
    write began; the error must still name the field, as DESIGN says, not only "something is
    gone"."""
    if backend != "postgresql":
        pytest.skip("SQLite's write transactions lock at BEGIN: nothing can delete in between")
    settings = ClinicSettings(database_url=database_url("clinic"), data_dir=tmp_path)
    tenant = "t_race"

    async def race() -> dict[str, list[str]]:
        databases = tenant_databases(settings)
        trail = AuditTrail(databases, flush_interval=1.0)

        def audit() -> RequestAudit:
            return RequestAudit(trail, tenant, Actor(1, "tester", "race", "127.0.0.1"))

        try:
            async with databases.connect(tenant, write=True) as db:
                patient = await crud.create_patient(
                    db=db,
                    patient_in=PatientCreate(
                        name="Gone", birthdate="1990-01-01", contact_number="061234"
                    ),
                    audit=audit(),
                )
                cabinet = await crud.create_cabinet(
                    db=db,
                    cabinet_in=CabinetCreate(name="Room", address="Rue", contact_number="061234"),
                    audit=audit(),
                )
            async with databases.connect(tenant, write=True) as db:
                await db.execute(text("SELECT 1"))  # the transaction has begun
                async with databases.connect(tenant, write=True) as other:
                    await other.execute(
                        text(f'DELETE FROM "{tenant}".patient WHERE id = :id'),
                        {"id": patient.id},
                    )
                consultation_in = ConsultationCreate(
                    patient=patient.id,
                    cabinet=cabinet.id,
                    date="2024-01-01T10:00:00Z",
                    diagnosis="Race",
                )
                with pytest.raises(ValidationFailed) as refused:
                    await crud.create_consultation(
                        db=db, consultation_in=consultation_in, audit=audit()
                    )
            return {**refused.value.errors, "patient_id": [str(patient.id)]}
        finally:
            await databases.dispose()

    errors = asyncio.run(race())
    patient_id = errors.pop("patient_id")[0]
    assert errors == {"patient": [f'Invalid pk "{patient_id}" - object does not exist.']}


def test_an_export_racing_edits_of_the_record_is_always_whole(
    api: httpx.Client,
    make_cabinet: Callable[..., Json],
    make_consultation: Callable[..., Json],
) -> None:
    # The consultations and their cabinets are read in one statement: read apart, a
    # consultation moved to another cabinet in between named a cabinet the export had not
    # read (a 500).
    first, second = make_cabinet(api)["id"], make_cabinet(api, name="Cabinet B")["id"]
    consultation = make_consultation(api, cabinet=first)
    patient = consultation["patient"]
    stop = time.monotonic() + 2.0

    def move() -> set[int]:
        statuses, cabinet = set(), second
        while time.monotonic() < stop:
            response = api.patch(
                f"/api/consultations/{consultation['id']}/", json={"cabinet": cabinet}
            )
            statuses.add(response.status_code)
            cabinet = first if cabinet == second else second
        return statuses

    def export() -> set[int]:
        statuses = set()
        while time.monotonic() < stop:
            response = api.get(f"/api/patients/{patient}/export/")
            statuses.add(response.status_code)
            if response.status_code == 200:
                locations = {
                    entry["resource"]["id"]
                    for entry in response.json()["entry"]
                    if entry["resource"]["resourceType"] == "Location"
                }
                assert len(locations) == 1, locations
        return statuses

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(move) for _ in range(2)] + [pool.submit(export) for _ in range(4)]
        statuses = set().union(*(future.result() for future in futures))
    assert statuses == {200}
