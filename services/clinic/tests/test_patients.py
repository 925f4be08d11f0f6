"""Patients: every method and status code, and the patient field rules."""

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

Json = dict[str, Any]
PATIENT = {
    "name": "Ada Lovelace",
    "birthdate": "1990-12-10",
    "contact_number": "+44 20 7946 0000",
    "email": "ada@example.com",
}


def test_create_patient_returns_201_and_every_field(api: httpx.Client) -> None:
    response = api.post("/api/patients/", json=PATIENT)
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in PATIENT} == PATIENT
    assert isinstance(body["id"], int)
    assert set(body) == {*PATIENT, "id", "created_at", "updated_at"}


@pytest.mark.parametrize("email", [None, "", "absent"])
def test_patient_email_is_optional(api: httpx.Client, email: str | None) -> None:
    body = {**PATIENT, "email": email}
    if email == "absent":
        del body["email"]
    response = api.post("/api/patients/", json=body)
    assert response.status_code == 201
    assert response.json()["email"] is None


def test_get_put_patch_delete_patient(api: httpx.Client, make_patient: Callable[..., Json]) -> None:
    patient = make_patient(api)
    url = f"/api/patients/{patient['id']}/"
    assert api.get(url).json() == patient

    new = {"name": "Grace", "birthdate": "1906-12-09", "contact_number": "555 0100 22"}
    put = api.put(url, json=new)
    assert put.status_code == 200
    # PUT replaces: the omitted optional email is cleared.
    assert {k: put.json()[k] for k in (*new, "email")} == {**new, "email": None}

    patch = api.patch(url, json={"email": "grace@example.org"})
    assert patch.status_code == 200
    assert patch.json()["email"] == "grace@example.org"
    assert patch.json()["name"] == "Grace"

    assert api.patch(url, json={"email": None}).json()["email"] is None
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404


def test_put_patient_needs_every_required_field(
    api: httpx.Client, make_patient: Callable[..., Json]
) -> None:
    patient = make_patient(api)
    response = api.put(f"/api/patients/{patient['id']}/", json={"email": "x@example.com"})
    assert response.status_code == 400
    assert set(response.json()) == {"name", "birthdate", "contact_number"}


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_a_missing_patient_is_404_before_its_body_is_validated(
    api: httpx.Client, method: str
) -> None:
    response = api.request(method, "/api/patients/999999/", json={"email": "not an email"})
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_malformed_json_on_an_existing_patient_is_400(
    api: httpx.Client, make_patient: Callable[..., Json], method: str
) -> None:
    url = f"/api/patients/{make_patient(api)['id']}/"
    response = api.request(
        method, url, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")


def test_put_patient_without_a_body_or_with_a_non_object_is_400(
    api: httpx.Client, make_patient: Callable[..., Json]
) -> None:
    url = f"/api/patients/{make_patient(api)['id']}/"
    empty = api.put(url)
    null = api.put(url, content=b"null", headers={"Content-Type": "application/json"})
    listed = api.put(url, json=[PATIENT])
    assert empty.status_code == null.status_code == listed.status_code == 400
    assert empty.json() == null.json() == {"non_field_errors": ["No data provided."]}
    assert "non_field_errors" in listed.json()


def test_put_patient_with_a_bad_email_names_the_field(
    api: httpx.Client, make_patient: Callable[..., Json]
) -> None:
    url = f"/api/patients/{make_patient(api)['id']}/"
    response = api.put(url, json={**PATIENT, "email": "not an email"})
    assert response.status_code == 400
    assert set(response.json()) == {"email"}


def test_patch_patient_with_null_name_is_400(
    api: httpx.Client, make_patient: Callable[..., Json]
) -> None:
    patient = make_patient(api)
    response = api.patch(f"/api/patients/{patient['id']}/", json={"birthdate": None})
    assert response.status_code == 400
    assert response.json() == {"birthdate": ["This field may not be null."]}


def _tomorrow_everywhere() -> str:
    return ((datetime.now(UTC) + timedelta(hours=14)).date() + timedelta(days=1)).isoformat()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("birthdate", _tomorrow_everywhere(), "Birthdate cannot be in the future."),
        ("birthdate", "2999-01-01", "Birthdate cannot be in the future."),
        ("birthdate", "1899-12-31", "Birthdate cannot be before 1900-01-01."),
        ("birthdate", "1990-02-30", None),
        ("birthdate", "10/12/1990", None),
        ("birthdate", "1990-12-10T10:00:00", None),
        ("birthdate", 19901210, None),
        ("email", "not-an-email", "Enter a valid email address."),
        ("email", "a@b", "Enter a valid email address."),
        ("email", "two@@example.com", "Enter a valid email address."),
        ("contact_number", "12-34", None),
        ("contact_number", "+1 (555) 010-0000 ext 1", None),
        ("contact_number", "123456789012345678901", None),
        ("name", "", "This field may not be blank."),
        ("name", " \t\n ", "This field may not be blank."),
        ("name", "n" * 256, "Ensure this field has no more than 255 characters."),
        ("name", None, "Not a valid string."),
        # PostgreSQL cannot store NUL in text: a 400 as in DRF, never a 500.
        ("name", "Ada\x00Lovelace", "Null characters are not allowed."),
        ("email", "ada\x00@example.com", "Null characters are not allowed."),
        ("contact_number", "0612\x00345", "Null characters are not allowed."),
    ],
)
def test_invalid_patient_field_is_400_on_that_field(
    api: httpx.Client, field: str, value: Any, message: str | None
) -> None:
    response = api.post("/api/patients/", json={**PATIENT, field: value})
    assert response.status_code == 400, response.text
    body = response.json()
    assert list(body) == [field]
    if message is not None:
        assert body[field] == [message]
    elif field == "birthdate":
        assert body[field] == [
            "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."
        ]
    else:
        assert "phone number" in body[field][0]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("birthdate", "1900-01-01"),
        ("birthdate", date.today().isoformat()),
        ("name", "n" * 255),
        ("name", "Élodie Ñúñez"),
        ("contact_number", "123456"),
        ("contact_number", "+" + "1" * 20),
        ("contact_number", "(0) 12.34-56 78"),
    ],
)
def test_boundary_patient_values_are_accepted(api: httpx.Client, field: str, value: str) -> None:
    response = api.post("/api/patients/", json={**PATIENT, field: value})
    assert response.status_code == 201, response.text
    assert response.json()[field] == value


def test_patient_name_and_email_are_stored_trimmed(api: httpx.Client) -> None:
    response = api.post(
        "/api/patients/",
        json={
            **PATIENT,
            "name": "  Ada  ",
            "email": " ada@example.com ",
            "contact_number": " 0123456 ",
        },
    )
    body = response.json()
    assert (body["name"], body["email"], body["contact_number"]) == (
        "Ada",
        "ada@example.com",
        "0123456",
    )


def test_several_invalid_fields_are_reported_together(api: httpx.Client) -> None:
    response = api.post(
        "/api/patients/", json={"name": "", "birthdate": "1800-01-01", "contact_number": "x"}
    )
    assert response.status_code == 400
    assert set(response.json()) == {"name", "birthdate", "contact_number"}
