"""Consultations: methods, references within the tenant, date-times, delete protection."""

from collections.abc import Callable
from typing import Any

import httpx
import pytest

Json = dict[str, Any]


def test_create_consultation_returns_201(
    api: httpx.Client, make_patient: Callable[..., Json], make_cabinet: Callable[..., Json]
) -> None:
    patient, cabinet = make_patient(api), make_cabinet(api)
    body = {
        "patient": patient["id"],
        "cabinet": cabinet["id"],
        "date": "2024-03-01T10:30:00+02:00",
        "diagnosis": "  Caries on 36  ",
        "treatment": "",
    }
    response = api.post("/api/consultations/", json=body)
    assert response.status_code == 201
    created = response.json()
    assert created["patient"] == patient["id"]
    assert created["cabinet"] == cabinet["id"]
    # Stored as UTC; the response carries the offset.
    assert created["date"] == "2024-03-01T08:30:00Z"
    assert created["diagnosis"] == "Caries on 36"
    assert created["treatment"] == ""


def test_naive_consultation_date_is_read_as_utc(
    api: httpx.Client, make_consultation: Callable[..., Json]
) -> None:
    consultation = make_consultation(api, date="2024-03-01T10:30:00")
    assert consultation["date"] == "2024-03-01T10:30:00Z"


def test_consultation_without_treatment_field_is_created(
    api: httpx.Client, make_patient: Callable[..., Json], make_cabinet: Callable[..., Json]
) -> None:
    body = {
        "patient": make_patient(api)["id"],
        "cabinet": make_cabinet(api)["id"],
        "date": "2024-03-01T10:30:00Z",
        "diagnosis": "Checkup",
    }
    response = api.post("/api/consultations/", json=body)
    assert response.status_code == 201
    assert response.json()["treatment"] == ""


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("diagnosis", "   ", "This field may not be blank."),
        ("diagnosis", "d" * 10_001, "Ensure this field has no more than 10000 characters."),
        ("treatment", "t" * 10_001, "Ensure this field has no more than 10000 characters."),
        ("date", "yesterday", None),
        ("date", "2024-13-01T10:00:00", None),
        ("date", "2024-03-01", None),  # a date is not a point in time
        ("date", "20240301T1030", None),  # compact ISO 8601: DRF refuses it too
        ("date", "2024-03-01T1030", None),
        ("date", 1700000000, None),
        ("date", None, None),
        ("patient", "abc", "Incorrect type. Expected pk value, received str."),
        ("patient", True, "Incorrect type. Expected pk value, received bool."),
    ],
)
def test_invalid_consultation_field_is_400_on_that_field(
    api: httpx.Client,
    make_consultation: Callable[..., Json],
    field: str,
    value: Any,
    message: str | None,
) -> None:
    existing = make_consultation(api)
    body = {k: existing[k] for k in ("patient", "cabinet", "date", "diagnosis", "treatment")}
    response = api.post("/api/consultations/", json={**body, field: value})
    assert response.status_code == 400, response.text
    errors = response.json()
    assert list(errors) == [field]
    if message is not None:
        assert errors[field] == [message]
    else:
        assert errors[field][0].startswith("Datetime has wrong format.")


def test_diagnosis_of_10000_characters_is_accepted(
    api: httpx.Client, make_consultation: Callable[..., Json]
) -> None:
    created = make_consultation(api, diagnosis="d" * 10_000, treatment="t" * 10_000)
    assert len(created["diagnosis"]) == len(created["treatment"]) == 10_000


@pytest.mark.parametrize("field", ["patient", "cabinet"])
def test_unknown_reference_is_400_on_that_field(
    api: httpx.Client, make_consultation: Callable[..., Json], field: str
) -> None:
    existing = make_consultation(api)
    body = {k: existing[k] for k in ("patient", "cabinet", "date", "diagnosis")}
    for bad in (7777, 99999999999):
        response = api.post("/api/consultations/", json={**body, field: bad})
        assert response.status_code == 400
        assert response.json() == {field: [f'Invalid pk "{bad}" - object does not exist.']}
    patch = api.patch(f"/api/consultations/{existing['id']}/", json={field: 7777})
    assert patch.status_code == 400
    assert patch.json() == {field: ['Invalid pk "7777" - object does not exist.']}


def test_put_patch_delete_consultation(
    api: httpx.Client,
    make_consultation: Callable[..., Json],
    make_patient: Callable[..., Json],
) -> None:
    consultation = make_consultation(api)
    url = f"/api/consultations/{consultation['id']}/"
    other = make_patient(api, name="Other")
    put = api.put(
        url,
        json={
            "patient": other["id"],
            "cabinet": consultation["cabinet"],
            "date": "2025-01-02T03:04:05Z",
            "diagnosis": "Gingivitis",
        },
    )
    assert put.status_code == 200
    assert put.json()["patient"] == other["id"]
    assert put.json()["treatment"] == ""
    assert put.json()["date"] == "2025-01-02T03:04:05Z"

    incomplete = api.put(url, json={"diagnosis": "x"})
    assert incomplete.status_code == 400
    assert set(incomplete.json()) == {"patient", "cabinet", "date"}

    patch = api.patch(url, json={"treatment": "Scaling"})
    assert patch.status_code == 200
    assert patch.json()["treatment"] == "Scaling"
    assert patch.json()["diagnosis"] == "Gingivitis"
    assert api.patch(url, json={"diagnosis": None}).status_code == 400

    assert api.get(url).json() == patch.json()
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404
    assert api.delete(url).status_code == 404


@pytest.mark.parametrize(("resource", "field"), [("patients", "patient"), ("cabinets", "cabinet")])
def test_delete_referenced_record_is_refused_with_409(
    api: httpx.Client, make_consultation: Callable[..., Json], resource: str, field: str
) -> None:
    first = make_consultation(api)
    make_consultation(api, **{field: first[field]})
    response = api.delete(f"/api/{resource}/{first[field]}/")
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "cannot be deleted: 2 consultations reference it" in detail
    assert api.get(f"/api/{resource}/{first[field]}/").status_code == 200
    listed = api.get("/api/consultations/", params={field: first[field]}).json()
    assert listed["count"] == 2


def test_delete_patient_after_its_consultations_are_gone(
    api: httpx.Client, make_consultation: Callable[..., Json]
) -> None:
    consultation = make_consultation(api)
    assert api.delete(f"/api/patients/{consultation['patient']}/").status_code == 409
    assert api.delete(f"/api/consultations/{consultation['id']}/").status_code == 204
    assert api.delete(f"/api/patients/{consultation['patient']}/").status_code == 204


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_unknown_consultation_is_404(api: httpx.Client, method: str) -> None:
    for consultation_id in ("424242", "abc"):
        response = api.request(method, f"/api/consultations/{consultation_id}/", json={})
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found."}
