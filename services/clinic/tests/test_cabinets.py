"""Cabinets: every method and status code, and the cabinet field rules."""

from collections.abc import Callable
from typing import Any

import httpx
import pytest

Json = dict[str, Any]
CABINET = {"name": "Cabinet A", "address": "1 Main St", "contact_number": "+33 1 23 45 67"}


def test_create_cabinet_returns_201_with_read_only_fields(api: httpx.Client) -> None:
    response = api.post("/api/cabinets/", json={**CABINET, "id": 999, "created_at": "2000-01-01"})
    assert response.status_code == 201
    body = response.json()
    assert body["id"] != 999
    assert {k: body[k] for k in CABINET} == CABINET
    assert body["created_at"].endswith("Z")
    assert body["created_at"] == body["updated_at"]
    assert not body["created_at"].startswith("2000")


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_read_only_fields_in_an_update_are_ignored(
    api: httpx.Client, make_cabinet: Callable[..., Json], method: str
) -> None:
    cabinet = make_cabinet(api)
    forged = {"id": 999_999, "created_at": "2000-01-01T00:00:00Z", "updated_at": "2000-01-01"}
    response = api.request(
        method, f"/api/cabinets/{cabinet['id']}/", json={**CABINET, "name": "Renamed", **forged}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["created_at"]) == (cabinet["id"], cabinet["created_at"])
    assert body["updated_at"] >= cabinet["updated_at"]
    assert body["name"] == "Renamed"
    assert api.get("/api/cabinets/999999/").status_code == 404


def test_get_cabinet_returns_it(api: httpx.Client, make_cabinet: Callable[..., Json]) -> None:
    cabinet = make_cabinet(api)
    response = api.get(f"/api/cabinets/{cabinet['id']}/")
    assert response.status_code == 200
    assert response.json() == cabinet


def test_path_without_trailing_slash_is_served_identically(
    fresh_api: httpx.Client, make_cabinet: Callable[..., Json]
) -> None:
    cabinet = make_cabinet(fresh_api)
    response = fresh_api.get(f"/api/cabinets/{cabinet['id']}")
    assert response.status_code == 200
    assert response.json() == cabinet
    assert fresh_api.get("/api/cabinets").json()["count"] == 1


def test_put_cabinet_replaces_every_field(
    api: httpx.Client, make_cabinet: Callable[..., Json]
) -> None:
    cabinet = make_cabinet(api)
    new = {"name": "B", "address": "2 Side St", "contact_number": "01 02 03 04 05"}
    response = api.put(f"/api/cabinets/{cabinet['id']}/", json=new)
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in new} == new
    assert body["created_at"] == cabinet["created_at"]
    assert body["updated_at"] > cabinet["updated_at"]
    assert api.get(f"/api/cabinets/{cabinet['id']}/").json() == body


def test_put_cabinet_needs_every_field(
    api: httpx.Client, make_cabinet: Callable[..., Json]
) -> None:
    cabinet = make_cabinet(api)
    response = api.put(f"/api/cabinets/{cabinet['id']}/", json={"name": "Only"})
    assert response.status_code == 400
    assert response.json() == {
        "address": ["This field is required."],
        "contact_number": ["This field is required."],
    }
    assert api.get(f"/api/cabinets/{cabinet['id']}/").json()["name"] == cabinet["name"]


def test_patch_cabinet_changes_only_given_fields(
    api: httpx.Client, make_cabinet: Callable[..., Json]
) -> None:
    cabinet = make_cabinet(api)
    response = api.patch(f"/api/cabinets/{cabinet['id']}/", json={"address": "  9 New St  "})
    assert response.status_code == 200
    body = response.json()
    assert body["address"] == "9 New St"
    assert body["name"] == cabinet["name"]
    assert body["contact_number"] == cabinet["contact_number"]


def test_patch_cabinet_with_null_required_field_is_400(
    api: httpx.Client, make_cabinet: Callable[..., Json]
) -> None:
    cabinet = make_cabinet(api)
    response = api.patch(f"/api/cabinets/{cabinet['id']}/", json={"name": None})
    assert response.status_code == 400
    assert response.json() == {"name": ["This field may not be null."]}


def test_patch_cabinet_with_empty_body_only_touches_updated_at(
    api: httpx.Client, make_cabinet: Callable[..., Json]
) -> None:
    cabinet = make_cabinet(api)
    body = api.patch(f"/api/cabinets/{cabinet['id']}/", json={}).json()
    assert {k: body[k] for k in CABINET} == {k: cabinet[k] for k in CABINET}


def test_delete_cabinet_returns_204_then_404(
    api: httpx.Client, make_cabinet: Callable[..., Json]
) -> None:
    cabinet = make_cabinet(api)
    response = api.delete(f"/api/cabinets/{cabinet['id']}/")
    assert response.status_code == 204
    assert response.content == b""
    assert api.get(f"/api/cabinets/{cabinet['id']}/").status_code == 404
    assert api.delete(f"/api/cabinets/{cabinet['id']}/").status_code == 404


def test_deleted_cabinet_id_is_never_reused(
    api: httpx.Client, make_cabinet: Callable[..., Json]
) -> None:
    first = make_cabinet(api)
    api.delete(f"/api/cabinets/{first['id']}/")
    assert make_cabinet(api)["id"] > first["id"]


def test_an_id_spelled_other_than_in_digits_names_nothing(
    api: httpx.Client, make_cabinet: Callable[..., Json]
) -> None:
    # DESIGN.md: a non-numeric id in a path is a 404; int() would read each of these as the id.
    cabinet = make_cabinet(api)["id"]
    assert api.get(f"/api/cabinets/{cabinet}/").status_code == 200
    for spelled in (f"{cabinet}.0", f"+{cabinet}", f"%20{cabinet}", f"{cabinet}%20", f"{cabinet}_"):
        response = api.get(f"/api/cabinets/{spelled}/")
        assert response.status_code == 404, spelled
        assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
# 2147483648: one past the id column (documented as the path's maximum).
@pytest.mark.parametrize(
    "cabinet_id", ["999999", "abc", "0", "-1", "2147483648", "99999999999999999999"]
)
def test_unknown_or_non_numeric_cabinet_id_is_404(
    api: httpx.Client, method: str, cabinet_id: str
) -> None:
    response = api.request(method, f"/api/cabinets/{cabinet_id}/", json=CABINET)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "   ", "This field may not be blank."),
        ("name", "x" * 256, "Ensure this field has no more than 255 characters."),
        ("name", 12, "Not a valid string."),
        ("address", "", "This field may not be blank."),
        ("contact_number", "12345", None),
        ("contact_number", "1" * 21, None),
        ("contact_number", "call me", None),
        ("contact_number", "++33 1 23 45 67", None),
    ],
)
def test_invalid_cabinet_field_is_400_on_that_field(
    api: httpx.Client, field: str, value: Any, message: str | None
) -> None:
    response = api.post("/api/cabinets/", json={**CABINET, field: value})
    assert response.status_code == 400
    body = response.json()
    assert list(body) == [field]
    if message is not None:
        assert body[field] == [message]
    else:
        assert "phone number" in body[field][0]


def test_create_cabinet_with_missing_fields_lists_each(api: httpx.Client) -> None:
    response = api.post("/api/cabinets/", json={})
    assert response.status_code == 400
    assert set(response.json()) == {"name", "address", "contact_number"}


def test_cabinet_text_is_stored_trimmed_and_phone_as_given(api: httpx.Client) -> None:
    response = api.post(
        "/api/cabinets/",
        json={"name": "  Smile  ", "address": " 3 Rue ", "contact_number": " (01) 23.45-67 "},
    )
    body = response.json()
    assert (body["name"], body["address"], body["contact_number"]) == (
        "Smile",
        "3 Rue",
        "(01) 23.45-67",
    )


def test_unknown_fields_are_ignored(api: httpx.Client) -> None:
    response = api.post("/api/cabinets/", json={**CABINET, "colour": "blue"})
    assert response.status_code == 201
    assert "colour" not in response.json()


def test_malformed_json_is_400(api: httpx.Client) -> None:
    response = api.post(
        "/api/cabinets/", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "detail" in response.json()


def test_non_object_body_is_400(api: httpx.Client) -> None:
    response = api.post("/api/cabinets/", json=["a"])
    assert response.status_code == 400


def test_wrong_content_type_is_415(api: httpx.Client) -> None:
    response = api.post("/api/cabinets/", content=b"name=x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
