"""Lists: DRF pagination and its edges, absolute links, search, ordering, filters."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

Json = dict[str, Any]


def _seed(count: int, make: Callable[[int], Json]) -> list[Json]:
    with ThreadPoolExecutor(8) as pool:
        return sorted(pool.map(make, range(count)), key=lambda record: record["id"])


def test_empty_list_has_one_empty_page(fresh_api: httpx.Client) -> None:
    for resource in ("cabinets", "patients", "consultations"):
        response = fresh_api.get(f"/api/{resource}/")
        assert response.status_code == 200
        assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}
        assert fresh_api.get(f"/api/{resource}/", params={"page": 2}).status_code == 404


@pytest.mark.parametrize("page", ["0", "-1", "abc", "4", "1.5", ""])
def test_page_that_is_not_a_page_of_the_result_is_404(
    fresh_api: httpx.Client, make_cabinet: Callable[..., Json], page: str
) -> None:
    for _ in range(5):
        make_cabinet(fresh_api)
    response = fresh_api.get("/api/cabinets/", params={"page": page, "page_size": 2})
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}


@pytest.mark.parametrize("page", ["999999999", "10737419", "99999999999999999999"])
def test_a_page_far_past_the_end_is_a_404_not_an_overflow(
    fresh_api: httpx.Client, page: str
) -> None:
    # Page 10,737,419 of 200 is an offset past 2**31: PostgreSQL refused it as a 32-bit
    # parameter (a 500) until the offset went 64-bit.
    for resource in ("cabinets", "patients", "consultations"):
        response = fresh_api.get(f"/api/{resource}/", params={"page": page, "page_size": 200})
        assert response.status_code == 404
        assert response.json() == {"detail": "Invalid page."}


@pytest.mark.parametrize(
    ("page_size", "message"),
    [
        ("abc", "A valid integer is required."),
        ("1.5", "A valid integer is required."),
        ("\u00b3", "A valid integer is required."),
        ("", "A valid integer is required."),
        ("0", "Ensure this value is greater than or equal to 1."),
        ("-1", "A valid integer is required."),
    ],
)
def test_a_page_size_that_is_not_a_whole_number_from_1_is_a_400(
    fresh_api: httpx.Client, page_size: str, message: str
) -> None:
    response = fresh_api.get("/api/cabinets/", params={"page_size": page_size})
    assert response.status_code == 400
    assert response.json() == {"page_size": [message]}


def test_pages_walk_every_record_once_with_absolute_links(
    fresh_api: httpx.Client, make_cabinet: Callable[..., Json]
) -> None:
    created = _seed(5, lambda i: make_cabinet(fresh_api, name=f"Cabinet {i}"))
    first = fresh_api.get("/api/cabinets/", params={"page_size": 2}).json()
    assert first["count"] == 5
    assert first["previous"] is None
    assert first["next"] == f"{fresh_api.base_url}/api/cabinets/?page_size=2&page=2"
    seen = [record["id"] for record in first["results"]]
    page = first
    while page["next"]:
        page = httpx.get(page["next"], headers=fresh_api.headers).json()
        seen += [record["id"] for record in page["results"]]
    assert seen == [record["id"] for record in created]
    # The last page links back to page 2; page 2 links to the first without ?page=.
    assert page["previous"] == f"{fresh_api.base_url}/api/cabinets/?page_size=2&page=2"
    second = fresh_api.get("/api/cabinets/", params={"page_size": 2, "page": 2}).json()
    assert second["previous"] == f"{fresh_api.base_url}/api/cabinets/?page_size=2"
    last = fresh_api.get("/api/cabinets/", params={"page_size": 2, "page": "last"}).json()
    assert last == page


def test_links_use_the_forwarded_scheme_host_and_port(
    fresh_api: httpx.Client, make_cabinet: Callable[..., Json]
) -> None:
    for _ in range(3):
        make_cabinet(fresh_api)
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "clinic.example.com"}
    body = fresh_api.get(
        "/api/cabinets/", params={"page_size": 1, "page": 2, "search": "cab"}, headers=forwarded
    ).json()
    assert body["next"] == "https://clinic.example.com/api/cabinets/?page_size=1&search=cab&page=3"
    assert body["previous"] == "https://clinic.example.com/api/cabinets/?page_size=1&search=cab"

    with_port = {**forwarded, "X-Forwarded-Port": "8443"}
    body = fresh_api.get("/api/cabinets/", params={"page_size": 1}, headers=with_port).json()
    assert body["next"] == "https://clinic.example.com:8443/api/cabinets/?page_size=1&page=2"

    # Traefik passes Host through (with its port) and sets X-Forwarded-Port to the same.
    gateway = {"Host": "localhost:8000", "X-Forwarded-Proto": "http", "X-Forwarded-Port": "8000"}
    body = fresh_api.get("/api/cabinets/", params={"page_size": 1}, headers=gateway).json()
    assert body["next"] == "http://localhost:8000/api/cabinets/?page_size=1&page=2"


def test_page_size_defaults_to_50_and_is_capped_at_200(
    fresh_api: httpx.Client, make_patient: Callable[..., Json]
) -> None:
    created = _seed(201, lambda i: make_patient(fresh_api, name=f"P{i:03d}"))
    default = fresh_api.get("/api/patients/").json()
    assert default["count"] == 201
    assert len(default["results"]) == 50
    capped = fresh_api.get("/api/patients/", params={"page_size": 500}).json()
    assert len(capped["results"]) == 200
    assert capped["next"].endswith("page_size=500&page=2")
    tail = fresh_api.get("/api/patients/", params={"page_size": 500, "page": 2}).json()
    assert [p["id"] for p in tail["results"]] == [created[-1]["id"]]


def test_search_is_case_insensitive_on_the_documented_fields(
    fresh_api: httpx.Client, make_patient: Callable[..., Json]
) -> None:
    ada = make_patient(
        fresh_api, name="Ada Lovelace", email="ada@example.com", contact_number="0601020304"
    )
    grace = make_patient(
        fresh_api, name="Grace Hopper", email="GRACE@NAVY.MIL", contact_number="+1 555 0100"
    )
    elodie = make_patient(fresh_api, name="ÉLODIE Durand", email=None, contact_number="0700000000")

    def found(term: str) -> list[int]:
        body = fresh_api.get("/api/patients/", params={"search": term}).json()
        assert body["count"] == len(body["results"])
        return sorted(p["id"] for p in body["results"])

    assert found("lovelace") == [ada["id"]]
    assert found("navy.mil") == [grace["id"]]
    assert found("555 01") == [grace["id"]]
    assert found("élodie") == [elodie["id"]]
    assert found("a") == sorted([ada["id"], grace["id"], elodie["id"]])
    # Terms split on spaces and commas; each must match some field (DRF's SearchFilter).
    assert found("grace,hopper") == [grace["id"]]
    assert found("ada hopper") == []
    assert found("") == sorted([ada["id"], grace["id"], elodie["id"]])


def test_search_treats_wildcards_literally(
    fresh_api: httpx.Client, make_cabinet: Callable[..., Json]
) -> None:
    plain = make_cabinet(fresh_api, name="Smile", address="1 Rue")
    percent = make_cabinet(fresh_api, name="100% Smile", address="2 Rue")
    underscore = make_cabinet(fresh_api, name="Smile_2", address="3 Rue\\b")

    def found(term: str) -> list[int]:
        body = fresh_api.get("/api/cabinets/", params={"search": term}).json()
        return sorted(c["id"] for c in body["results"])

    assert found("%") == [percent["id"]]
    assert found("_") == [underscore["id"]]
    assert found("\\") == [underscore["id"]]
    assert found("RUE") == sorted([plain["id"], percent["id"], underscore["id"]])


def test_consultation_search_covers_diagnosis_and_treatment(
    fresh_api: httpx.Client, make_consultation: Callable[..., Json]
) -> None:
    caries = make_consultation(fresh_api, diagnosis="Caries", treatment="Composite filling")
    make_consultation(fresh_api, diagnosis="Gingivitis", treatment="Scaling")
    for term in ("CARIES", "composite"):
        body = fresh_api.get("/api/consultations/", params={"search": term}).json()
        assert [c["id"] for c in body["results"]] == [caries["id"]]


def test_ordering_on_listed_fields_with_descending_and_ties(
    fresh_api: httpx.Client, make_patient: Callable[..., Json]
) -> None:
    b = make_patient(fresh_api, name="Bob", birthdate="1980-01-01")
    a1 = make_patient(fresh_api, name="Alice", birthdate="1990-01-01")
    a2 = make_patient(fresh_api, name="Alice", birthdate="1970-01-01")

    def ids(ordering: str) -> list[int]:
        body = fresh_api.get("/api/patients/", params={"ordering": ordering}).json()
        return [p["id"] for p in body["results"]]

    assert ids("") == [b["id"], a1["id"], a2["id"]]
    assert ids("name") == [a1["id"], a2["id"], b["id"]]
    assert ids("-name") == [b["id"], a2["id"], a1["id"]]
    assert ids("birthdate") == [a2["id"], b["id"], a1["id"]]
    assert ids("name,-birthdate") == [a1["id"], a2["id"], b["id"]]
    assert ids("name,birthdate") == [a2["id"], a1["id"], b["id"]]
    assert ids("-id") == [a2["id"], a1["id"], b["id"]]
    # Unknown fields are ignored, as DRF's OrderingFilter does.
    assert ids("shoe_size") == ids("")
    assert ids("shoe_size,-name") == ids("-name")


@pytest.mark.parametrize(
    ("resource", "field", "values"),
    [
        ("patients", "email", ["carol@example.com", "alice@example.com", "bob@example.com"]),
        ("patients", "contact_number", ["+33 300000", "+33 100000", "+33 200000"]),
        ("cabinets", "address", ["3 Rue C", "1 Rue A", "2 Rue B"]),
        ("cabinets", "contact_number", ["0300000", "0100000", "0200000"]),
        ("consultations", "diagnosis", ["Gingivitis", "Abscess", "Caries"]),
        ("consultations", "treatment", ["Scaling", "Drainage", "Filling"]),
    ],
)
def test_every_listed_field_is_orderable(
    fresh_api: httpx.Client,
    make_patient: Callable[..., Json],
    make_cabinet: Callable[..., Json],
    make_consultation: Callable[..., Json],
    resource: str,
    field: str,
    values: list[str],
) -> None:
    make = {"patients": make_patient, "cabinets": make_cabinet}.get(resource, make_consultation)
    created = [make(fresh_api, **{field: value})["id"] for value in values]
    by_value = [created[i] for i in sorted(range(3), key=lambda i: values[i])]

    def ids(ordering: str) -> list[int]:
        body = fresh_api.get(f"/api/{resource}/", params={"ordering": ordering}).json()
        return [record["id"] for record in body["results"]]

    assert ids(field) == by_value
    assert ids(f"-{field}") == by_value[::-1]


def test_pages_are_stable_when_the_ordering_field_ties(
    fresh_api: httpx.Client, make_cabinet: Callable[..., Json]
) -> None:
    created = _seed(7, lambda i: make_cabinet(fresh_api, name="Same"))
    seen: list[int] = []
    for page in (1, 2, 3, 4):
        body = fresh_api.get(
            "/api/cabinets/", params={"ordering": "name", "page_size": 2, "page": page}
        ).json()
        seen += [c["id"] for c in body["results"]]
    assert seen == [c["id"] for c in created]


def test_consultation_filters_by_patient_cabinet_and_dates(
    fresh_api: httpx.Client,
    make_patient: Callable[..., Json],
    make_cabinet: Callable[..., Json],
    make_consultation: Callable[..., Json],
) -> None:
    p1, p2 = make_patient(fresh_api), make_patient(fresh_api)
    c1, c2 = make_cabinet(fresh_api), make_cabinet(fresh_api)
    early = make_consultation(
        fresh_api, patient=p1["id"], cabinet=c1["id"], date="2024-03-01T00:00:00Z"
    )
    late = make_consultation(
        fresh_api, patient=p1["id"], cabinet=c2["id"], date="2024-03-01T23:59:59Z"
    )
    next_day = make_consultation(
        fresh_api, patient=p2["id"], cabinet=c1["id"], date="2024-03-02T08:00:00Z"
    )

    def ids(**params: Any) -> list[int]:
        response = fresh_api.get("/api/consultations/", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["count"] == len(body["results"])
        return [c["id"] for c in body["results"]]

    assert ids(patient=p1["id"]) == [early["id"], late["id"]]
    assert ids(cabinet=c1["id"]) == [early["id"], next_day["id"]]
    assert ids(patient=p1["id"], cabinet=c1["id"]) == [early["id"]]
    assert ids(patient=999999) == []
    assert ids(patient=99999999999) == []
    assert ids(patient="9" * 5000) == []  # a number, naming nothing: not int()-ed whole
    # A date as date_before covers the whole day; bounds are inclusive.
    assert ids(date_before="2024-03-01") == [early["id"], late["id"]]
    assert ids(date_after="2024-03-02") == [next_day["id"]]
    assert ids(date_after="2024-03-01T23:59:59Z") == [late["id"], next_day["id"]]
    assert ids(date_before="2024-03-01T00:00:00Z") == [early["id"]]
    # A naive date-time is UTC; an offset is honoured.
    assert ids(date_after="2024-03-01T12:00:00") == [late["id"], next_day["id"]]
    assert ids(date_before="2024-03-02T10:00:00+02:00") == [early["id"], late["id"], next_day["id"]]
    assert ids(date_before="2024-03-02T09:59:59+02:00") == [early["id"], late["id"]]
    assert ids(date_after="2024-03-01", date_before="2024-03-01", ordering="-date") == [
        late["id"],
        early["id"],
    ]
    # The last day there is: its end is past every date-time (adding a day was a 500).
    assert ids(date_before="9999-12-31") == [early["id"], late["id"], next_day["id"]]
    assert ids(date_after="0001-01-01") == [early["id"], late["id"], next_day["id"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"patient": "abc"}, "patient"),
        ({"cabinet": "-1"}, "cabinet"),
        # Unicode digits: str.isdigit() says yes, int() says no (it was a 500).
        ({"cabinet": "³"}, "cabinet"),
        ({"patient": "³"}, "patient"),
        ({"patient": "١٢"}, "patient"),
        ({"patient": "\uff11\uff12"}, "patient"),  # fullwidth 12
        ({"cabinet": "1\x00"}, "cabinet"),
        ({"patient": "1.0"}, "patient"),
        ({"date_after": "March 1st"}, "date_after"),
        ({"date_before": "2024-02-30"}, "date_before"),
        # Valid ISO 8601, but in year 10000 (or 0) once in UTC: out of range (it was a 500).
        ({"date_before": "9999-12-31T23:00:00-05:00"}, "date_before"),
        ({"date_after": "0001-01-01T00:00:00+05:00"}, "date_after"),
        ({"updated_after": "9999-12-31T23:00:00-05:00"}, "updated_after"),
        ({"updated_after": "yesterday"}, "updated_after"),
    ],
)
def test_bad_filter_value_is_400_on_the_parameter(
    api: httpx.Client, params: dict[str, str], field: str
) -> None:
    response = api.get("/api/consultations/", params=params)
    assert response.status_code == 400
    assert list(response.json()) == [field]


@pytest.mark.parametrize("resource", ["cabinets", "patients", "consultations"])
def test_updated_after_returns_records_changed_since(
    fresh_api: httpx.Client,
    make_cabinet: Callable[..., Json],
    make_patient: Callable[..., Json],
    make_consultation: Callable[..., Json],
    resource: str,
) -> None:
    make = {"cabinets": make_cabinet, "patients": make_patient, "consultations": make_consultation}
    old, changed = make[resource](fresh_api), make[resource](fresh_api)
    patched = fresh_api.patch(f"/api/{resource}/{changed['id']}/", json={}).json()
    since = patched["updated_at"]

    def ids(value: str) -> list[int]:
        response = fresh_api.get(f"/api/{resource}/", params={"updated_after": value})
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == len(body["results"])
        return [record["id"] for record in body["results"]]

    assert ids(since) == [changed["id"]]
    before = datetime.fromisoformat(old["created_at"]) - timedelta(seconds=1)
    assert ids(before.isoformat()) == sorted([old["id"], changed["id"]])
    # Naive is UTC; other offsets are converted.
    assert ids(before.astimezone(UTC).replace(tzinfo=None).isoformat()) == sorted(
        [old["id"], changed["id"]]
    )
    assert ids((datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []
    bad = fresh_api.get(f"/api/{resource}/", params={"updated_after": "soon"})
    assert bad.status_code == 400
    assert bad.json() == {"updated_after": ["Enter a valid date/time."]}
