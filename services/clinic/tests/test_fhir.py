"""The FHIR export (``clinic.fhir.patient_bundle``): a patient's record as an R4 Bundle.

Every bundle is serialised to JSON and parsed back by ``fhir.resources`` (its R4B models match
R4 for Patient, Encounter, Procedure, Location and Bundle): structure, cardinality, data types,
no unknown element. ``assert_valid`` adds the rules of the specification that the library does
not check: fullUrls present, absolute and unique (bdl-7), every reference resolving inside the
bundle to a resource of the right type, the codes of required bindings, and the string pattern
anchored as the R4 JSON schema has it.
"""

import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import httpx
import pytest
from clinic.fhir import patient_bundle
from clinic.models import (
    MAX_ID,
    CabinetCreate,
    CabinetPublic,
    ConsultationCreate,
    ConsultationPublic,
    PatientCreate,
    PatientPublic,
    parse_datetime,
)
from fhir.resources.R4B.bundle import Bundle
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from pydantic import ValidationError

Json = dict[str, Any]

UPDATED = datetime(2024, 6, 1, 12, 30, 15, 250_000, tzinfo=UTC)
TODAY = date.today()

# Required bindings in R4 (fhir.resources does not check codes).
ENCOUNTER_STATUSES = {
    "planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
    "entered-in-error", "unknown",
}  # fmt: skip
EVENT_STATUSES = {
    "preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
    "entered-in-error", "unknown",
}  # fmt: skip
CONTACT_POINT_SYSTEMS = {"phone", "fax", "email", "pager", "url", "sms", "other"}
# Which resource type each kind of reference must point to.
REFERENCE_TARGETS = {"subject": "Patient", "encounter": "Encounter", "location": "Location"}
# The R4 JSON schema's string pattern, ^[ \r\n\t\S]+$, is an ECMAScript one: no whitespace but
# space, tab, CR and LF. Python's \s and ECMAScript's differ slightly (U+FEFF is whitespace only
# in ECMAScript, U+001C-U+001F only in Python): refuse both.
FHIR_STRING = re.compile(r"(?:[ \r\n\t]|[^\s\ufeff])+")


# --- records as clinic.crud returns them ---


def make_patient(**fields: Any) -> PatientPublic:
    values = {
        "id": 1,
        "name": "Ada Lovelace",
        "birthdate": date(1990, 12, 10),
        "contact_number": "+44 20 7946 0000",
        "email": "ada@example.com",
        "created_at": UPDATED,
        "updated_at": UPDATED,
    }
    return PatientPublic.model_validate({**values, **fields})


def make_cabinet(cabinet_id: int, **fields: Any) -> CabinetPublic:
    values = {
        "id": cabinet_id,
        "name": f"Cabinet {cabinet_id}",
        "address": f"{cabinet_id} rue de la Paix, Paris",
        "contact_number": "01 23 45 67 89",
        "created_at": UPDATED,
        "updated_at": UPDATED,
    }
    return CabinetPublic.model_validate({**values, **fields})


def make_consultation(consultation_id: int, **fields: Any) -> ConsultationPublic:
    values = {
        "id": consultation_id,
        "patient": 1,
        "cabinet": 1,
        "date": datetime(2024, 3, 1, 9, 0, tzinfo=UTC),
        "diagnosis": f"Diagnosis {consultation_id}",
        "treatment": f"Treatment {consultation_id}",
        "created_at": UPDATED,
        "updated_at": UPDATED,
    }
    return ConsultationPublic.model_validate({**values, **fields})


# --- what every bundle must be ---


def assert_valid(bundle: Json) -> Bundle:
    """``bundle`` as a client receives it (JSON), parsed by fhir.resources, plus the rules the
    library leaves out. Returns the parsed model."""
    parsed = Bundle.model_validate_json(json.dumps(bundle))
    assert parsed.type == "collection"
    assert parsed.timestamp is not None
    assert parsed.timestamp.utcoffset() is not None

    entries = bundle["entry"]
    full_urls = [entry["fullUrl"] for entry in entries]
    assert len(set(full_urls)) == len(full_urls), "bdl-7: fullUrls are unique"
    for full_url in full_urls:
        assert full_url.startswith("urn:uuid:")
        assert str(UUID(full_url.removeprefix("urn:uuid:"))) == full_url.removeprefix("urn:uuid:")
    types = {entry["fullUrl"]: entry["resource"]["resourceType"] for entry in entries}
    ids = [(entry["resource"]["resourceType"], entry["resource"]["id"]) for entry in entries]
    assert len(set(ids)) == len(ids)

    for field, target in _references(bundle):
        assert target in types, f"{field} reference {target} is not in the bundle"
        assert types[target] == REFERENCE_TARGETS[field]
    for entry in entries:
        resource = entry["resource"]
        if resource["resourceType"] == "Encounter":
            assert resource["status"] in ENCOUNTER_STATUSES
        if resource["resourceType"] == "Procedure":
            assert resource["status"] in EVENT_STATUSES
        for contact in resource.get("telecom", []):
            assert contact["system"] in CONTACT_POINT_SYSTEMS
    for text in _strings(bundle):
        assert FHIR_STRING.fullmatch(text), f"not a FHIR string: {text!r}"
    return parsed


def _references(value: Any, field: str = "") -> Iterator[tuple[str, str]]:
    """(the element holding it, the reference) for every Reference in ``value``."""
    if isinstance(value, dict):
        if "reference" in value:
            yield field, value["reference"]
        for key, item in value.items():
            yield from _references(item, key)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item, field)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def resources(bundle: Json, resource_type: str) -> list[Json]:
    return [
        entry["resource"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == resource_type
    ]


def resolve(bundle: Json, reference: Json) -> Json:
    (resource,) = [e["resource"] for e in bundle["entry"] if e["fullUrl"] == reference["reference"]]
    return resource


# --- examples ---


def test_record_with_several_consultations_in_several_cabinets_validates() -> None:
    patient = make_patient(id=7, name="Zoë", email=None)
    cabinets = [make_cabinet(1), make_cabinet(2), make_cabinet(3), make_cabinet(4)]
    consultations = [
        make_consultation(
            12,
            patient=7,
            cabinet=2,
            # As the API stores it: the offset given, the instant kept in UTC.
            date=parse_datetime("2024-03-10T09:15:00+05:30"),
            diagnosis="Carie occlusale sur la 36",
            treatment="Composite, deux faces",
        ),
        make_consultation(
            10,
            patient=7,
            cabinet=1,
            date=parse_datetime("2024-01-01T01:00:00+02:00"),
            treatment="",
        ),
        make_consultation(11, patient=7, cabinet=2, date=datetime(2024, 2, 1, 8, tzinfo=UTC)),
        make_consultation(13, patient=7, cabinet=3, date=datetime(2024, 4, 1, 8, tzinfo=UTC)),
    ]

    bundle = patient_bundle(patient, consultations, cabinets, tenant="public")
    parsed = assert_valid(bundle)

    assert [entry.resource.get_resource_type() for entry in parsed.entry] == [
        "Patient", "Location", "Location", "Location",
        "Encounter", "Encounter", "Procedure", "Encounter", "Procedure", "Encounter", "Procedure",
    ]  # fmt: skip
    (patient_resource,) = resources(bundle, "Patient")
    assert patient_resource["id"] == "patient-7"
    # One word: the name as stored, no guess at which part it is.
    assert patient_resource["name"] == [{"text": "Zoë"}]
    assert patient_resource["telecom"] == [{"system": "phone", "value": "+44 20 7946 0000"}]
    assert patient_resource["birthDate"] == "1990-12-10"
    assert patient_resource["meta"] == {"lastUpdated": "2024-06-01T12:30:15.250000+00:00"}

    # Only the cabinets the consultations took place in (not cabinet 4).
    assert [location["id"] for location in resources(bundle, "Location")] == [
        "location-1",
        "location-2",
        "location-3",
    ]
    location = resources(bundle, "Location")[1]
    assert location["name"] == "Cabinet 2"
    assert location["address"] == {"text": "2 rue de la Paix, Paris"}
    assert location["telecom"] == [{"system": "phone", "value": "01 23 45 67 89"}]

    encounters = {encounter["id"]: encounter for encounter in resources(bundle, "Encounter")}
    assert list(encounters) == ["encounter-10", "encounter-11", "encounter-12", "encounter-13"]
    visit = encounters["encounter-12"]
    assert visit["status"] == "finished"
    assert visit["class"]["code"] == "AMB"
    assert visit["class"]["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    assert visit["period"] == {"start": "2024-03-10T03:45:00+00:00"}
    assert encounters["encounter-10"]["period"] == {"start": "2023-12-31T23:00:00+00:00"}
    assert visit["reasonCode"] == [{"text": "Carie occlusale sur la 36"}]
    assert resolve(bundle, visit["subject"]) is patient_resource
    assert resolve(bundle, visit["location"][0]["location"])["id"] == "location-2"
    for encounter in encounters.values():
        assert resolve(bundle, encounter["subject"])["id"] == "patient-7"

    # A Procedure per non-empty treatment, pointing at its own Encounter.
    procedures = {procedure["id"]: procedure for procedure in resources(bundle, "Procedure")}
    assert list(procedures) == ["procedure-11", "procedure-12", "procedure-13"]
    procedure = procedures["procedure-12"]
    assert procedure["status"] == "completed"
    assert procedure["code"] == {"text": "Composite, deux faces"}
    assert procedure["performedDateTime"] == "2024-03-10T03:45:00+00:00"
    assert resolve(bundle, procedure["encounter"]) is visit
    assert resolve(bundle, procedure["subject"]) is patient_resource


def test_patient_without_consultations_is_a_bundle_of_the_patient_alone() -> None:
    patient = make_patient(name="Jean-Étienne de La Tour", email="jean@example.fr")

    bundle = patient_bundle(patient, [], [make_cabinet(1)], tenant="public")

    parsed = assert_valid(bundle)
    assert len(parsed.entry) == 1
    (resource,) = resources(bundle, "Patient")
    assert resource["name"] == [
        {"text": "Jean-Étienne de La Tour", "family": "Tour", "given": ["Jean-Étienne", "de", "La"]}
    ]
    assert resource["telecom"] == [
        {"system": "phone", "value": "+44 20 7946 0000"},
        {"system": "email", "value": "jean@example.fr"},
    ]


def test_only_the_patients_own_data_is_exported() -> None:
    patient = make_patient(id=1)
    own = [make_consultation(1, cabinet=1), make_consultation(2, cabinet=1)]
    # Every cabinet of the practice, as a caller might pass them: the unused ones stay out.
    cabinets = [
        make_cabinet(1),
        make_cabinet(2, name="Other practice room", address="Elsewhere", contact_number="0999999"),
    ]

    bundle = patient_bundle(patient, own, cabinets, tenant="public")

    assert_valid(bundle)
    ids = {entry["resource"]["id"] for entry in bundle["entry"]}
    assert ids == {
        "patient-1",
        "location-1",
        "encounter-1",
        "procedure-1",
        "encounter-2",
        "procedure-2",
    }
    text = json.dumps(bundle)
    for other in ("Other practice room", "Elsewhere", "0999999"):
        assert other not in text


def test_consultation_of_another_patient_is_refused() -> None:
    stray = make_consultation(5, patient=2)
    with pytest.raises(ValueError, match="consultation 5 is patient 2's, not patient 1's"):
        patient_bundle(make_patient(id=1), [stray], [make_cabinet(1)], tenant="public")


def test_consultation_in_a_cabinet_not_given_is_refused() -> None:
    visit = make_consultation(5, cabinet=9)
    with pytest.raises(ValueError, match="consultation 5 names cabinet 9, not given"):
        patient_bundle(make_patient(), [visit], [make_cabinet(1)], tenant="public")


def test_consultation_given_twice_is_refused() -> None:
    # Two entries with one fullUrl would break bdl-7.
    visit = make_consultation(5)
    with pytest.raises(ValueError, match="consultation 5 is given twice"):
        patient_bundle(make_patient(), [visit, visit], [make_cabinet(1)], tenant="public")


def test_full_urls_are_stable_for_a_record_and_differ_between_tenants() -> None:
    records = (make_patient(), [make_consultation(1)], [make_cabinet(1)])

    first = patient_bundle(*records, tenant="public")
    again = patient_bundle(*records, tenant="public")
    elsewhere = patient_bundle(*records, tenant="smile_dental")

    def full_urls(bundle: Json) -> list[str]:
        return [entry["fullUrl"] for entry in bundle["entry"]]

    assert full_urls(first) == full_urls(again)
    assert not set(full_urls(first)) & set(full_urls(elsewhere))
    # Each export is a bundle of its own.
    assert first["id"] != again["id"]
    assert first["identifier"] == {
        "system": "urn:ietf:rfc:3986",
        "value": f"urn:uuid:{first['id']}",
    }


def test_timestamp_is_the_export_time_and_naive_times_are_utc() -> None:
    visit = make_consultation(1, date=datetime(2024, 3, 1, 9, 0), updated_at=datetime(2024, 3, 2))
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))

    bundle = patient_bundle(make_patient(), [visit], [make_cabinet(1)], tenant="public", now=now)

    assert_valid(bundle)
    assert bundle["timestamp"] == "2025-01-02T08:04:05+00:00"
    (encounter,) = resources(bundle, "Encounter")
    assert encounter["period"] == {"start": "2024-03-01T09:00:00+00:00"}
    assert encounter["meta"] == {"lastUpdated": "2024-03-02T00:00:00+00:00"}

    before = datetime.now(UTC)
    stamped = datetime.fromisoformat(
        patient_bundle(make_patient(), [], [], tenant="public")["timestamp"]
    )
    assert before <= stamped <= datetime.now(UTC)


def test_whitespace_a_fhir_string_cannot_hold_becomes_a_space_or_a_line_feed() -> None:
    patient = make_patient(name="Anne\u00a0Marie\u2009Dupont")
    cabinet = make_cabinet(1, address="12\u202frue\ufeffHaute\x1fBis")
    visit = make_consultation(1, diagnosis="Douleur\u2028depuis\x0btrois jours", treatment="\x85x")

    bundle = patient_bundle(patient, [visit], [cabinet], tenant="public")

    assert_valid(bundle)
    (resource,) = resources(bundle, "Patient")
    assert resource["name"] == [
        {"text": "Anne Marie Dupont", "family": "Dupont", "given": ["Anne", "Marie"]}
    ]
    assert resources(bundle, "Location")[0]["address"] == {"text": "12 rue Haute Bis"}
    assert resources(bundle, "Encounter")[0]["reasonCode"] == [
        {"text": "Douleur\ndepuis\ntrois jours"}
    ]
    assert resources(bundle, "Procedure")[0]["code"] == {"text": "\nx"}


# --- GET /api/patients/<id>/export/ over HTTP, on both backends ---


def test_the_export_route_serves_the_whole_record_as_fhir_json(
    fresh_api: httpx.Client,
    make_patient: Callable[..., Json],
    make_cabinet: Callable[..., Json],
    make_consultation: Callable[..., Json],
) -> None:
    north, south, unused = (make_cabinet(fresh_api, name=name) for name in ("Nord", "Sud", "Ouest"))
    patient = make_patient(fresh_api, name="Élodie Martin", email=None)
    other = make_patient(fresh_api)
    for who, cabinet, when, treatment in (
        (patient, south, "2024-05-03T12:00:00+02:00", ""),
        (patient, north, "2024-05-02T08:30:00+10:00", "Détartrage"),
        (patient, north, "2024-05-04T09:00:00Z", "Contrôle"),
        (other, unused, "2024-05-04T08:00:00Z", "Extraction"),
    ):
        make_consultation(
            fresh_api,
            patient=who["id"],
            cabinet=cabinet["id"],
            date=when,
            diagnosis="Bilan",
            treatment=treatment,
        )
    response = fresh_api.get(f"/api/patients/{patient['id']}/export/")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    assert response.headers["cache-control"] == "no-store"
    bundle = response.json()
    assert_valid(bundle)
    (exported,) = resources(bundle, "Patient")
    assert exported["name"][0]["text"] == "Élodie Martin"
    assert sorted(location["name"] for location in resources(bundle, "Location")) == ["Nord", "Sud"]
    periods = [encounter["period"]["start"] for encounter in resources(bundle, "Encounter")]
    assert periods == [
        "2024-05-01T22:30:00+00:00",
        "2024-05-03T10:00:00+00:00",
        "2024-05-04T09:00:00+00:00",
    ]
    assert len(resources(bundle, "Procedure")) == 2
    assert "Extraction" not in response.text  # the other patient's record stays out


def test_a_patient_without_consultations_exports_alone(
    fresh_api: httpx.Client, make_patient: Callable[..., Json]
) -> None:
    patient = make_patient(fresh_api)
    bundle = fresh_api.get(f"/api/patients/{patient['id']}/export/").json()
    assert_valid(bundle)
    assert [entry["resource"]["resourceType"] for entry in bundle["entry"]] == ["Patient"]


def test_the_export_is_the_tenants_own_and_needs_a_token(
    fresh_api: httpx.Client,
    client_for: Callable[[str | None], httpx.Client],
    new_tenant: Callable[[], str],
    make_patient: Callable[..., Json],
) -> None:
    patient = make_patient(fresh_api)
    url = f"/api/patients/{patient['id']}/export/"
    assert client_for(new_tenant()).get(url).status_code == 404
    assert client_for(None).get(url).status_code == 401
    assert fresh_api.get("/api/patients/999999/export/").status_code == 404
    assert fresh_api.get("/api/patients/abc/export/").status_code == 404
    assert fresh_api.post(url, json={}).status_code == 405


# --- any record the API can store ---


def _text(max_length: int) -> st.SearchStrategy[str]:
    """Any Unicode text, with the boundary lengths 1 and ``max_length`` well represented (a
    text of maximum length is a short one repeated: Hypothesis would rarely draw one whole)."""
    return st.one_of(
        st.text(min_size=1, max_size=1),
        st.text(min_size=1, max_size=40),
        st.text(min_size=1, max_size=20).map(lambda s: (s * max_length)[:max_length]),
    )


DATES = st.dates(min_value=date(1900, 1, 1), max_value=TODAY)
OFFSETS = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# Local times from 1900 to today, at any offset the world uses.
MOMENTS = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime.combine(TODAY, datetime.min.time())
).flatmap(lambda local: OFFSETS.map(lambda offset: local.replace(tzinfo=offset)))
PHONES = st.from_regex(r"\+?(?:[0-9][ .()\-]?){6,20}", fullmatch=True)
IDS = st.integers(min_value=1, max_value=MAX_ID)
SERVER_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def _stored(model: Any, raw: Json) -> Json:
    """``raw`` as the API would store it (its field rules applied); rejects what it refuses."""
    try:
        return dict(model.model_validate(raw).model_dump())
    except ValidationError:
        reject()


@st.composite
def records(
    draw: st.DrawFn,
) -> tuple[PatientPublic, list[ConsultationPublic], list[CabinetPublic]]:
    patient_id = draw(IDS)
    patient = _stored(
        PatientCreate,
        {
            "name": draw(_text(255)),
            "birthdate": draw(DATES),
            "contact_number": draw(PHONES),
            "email": draw(st.none() | st.emails()),
        },
    )
    cabinet_ids = draw(st.lists(IDS, min_size=1, max_size=4, unique=True))
    cabinets = []
    for cabinet_id in cabinet_ids:
        fields = _stored(
            CabinetCreate,
            {"name": draw(_text(255)), "address": draw(_text(500)), "contact_number": draw(PHONES)},
        )
        cabinets.append(make_cabinet(cabinet_id, **fields, updated_at=draw(SERVER_TIMES)))
    consultations = []
    for consultation_id in draw(st.lists(IDS, max_size=6, unique=True)):
        fields = _stored(
            ConsultationCreate,
            {
                "patient": patient_id,
                "cabinet": draw(st.sampled_from(cabinet_ids)),
                "date": draw(MOMENTS),
                "diagnosis": draw(_text(10_000)),
                "treatment": draw(st.just("") | _text(10_000)),
            },
        )
        consultations.append(
            make_consultation(consultation_id, **fields, updated_at=draw(SERVER_TIMES))
        )
    return (
        make_patient(id=patient_id, **patient, updated_at=draw(SERVER_TIMES)),
        consultations,
        cabinets,
    )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(records())
def test_every_record_the_api_can_store_exports_as_a_valid_bundle(
    record: tuple[PatientPublic, list[ConsultationPublic], list[CabinetPublic]],
) -> None:
    patient, consultations, cabinets = record

    bundle = patient_bundle(patient, consultations, cabinets, tenant="public")

    assert_valid(bundle)
    assert len(resources(bundle, "Encounter")) == len(consultations)
    assert len(resources(bundle, "Procedure")) == sum(1 for c in consultations if c.treatment)
    assert len(resources(bundle, "Location")) == len({c.cabinet for c in consultations})
    (resource,) = resources(bundle, "Patient")
    assert_same_text(resource["name"][0]["text"], patient.name)
    encounters = {e["id"]: e for e in resources(bundle, "Encounter")}
    for consultation in consultations:
        encounter = encounters[f"encounter-{consultation.id}"]
        assert_same_text(encounter["reasonCode"][0]["text"], consultation.diagnosis)
        assert datetime.fromisoformat(encounter["period"]["start"]) == consultation.date


def assert_same_text(exported: str, stored: str) -> None:
    """Character for character, but for whitespace and control characters, which become a
    space or a line feed."""
    assert len(exported) == len(stored)
    for out, kept in zip(exported, stored, strict=True):
        if out != kept:
            assert out in " \n"
            assert kept.isspace() or unicodedata.category(kept) == "Cc" or kept == "\ufeff"
