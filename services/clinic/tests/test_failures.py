"""Authentication on every route, health and metrics, and database loss and recovery."""

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from clinic.main import create_app
from common.testing import TestSigner, assert_not_ready_until_keys_load
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

Json = dict[str, Any]
RESOURCES = ("cabinets", "patients", "consultations")
ROUTES = [
    *((method, f"/api/{resource}/") for resource in RESOURCES for method in ("GET", "POST")),
    *(
        (method, f"/api/{resource}/1/")
        for resource in RESOURCES
        for method in ("GET", "PUT", "PATCH", "DELETE")
    ),
]
PATIENT = {"name": "Ada", "birthdate": "1990-01-01", "contact_number": "0123456"}
# Valid bodies, so that only the database can make a request fail.
BODIES = {
    "patients": PATIENT,
    "cabinets": {"name": "C", "address": "A", "contact_number": "0123456"},
    "consultations": {"patient": 1, "cabinet": 1, "date": "2024-01-01T10:00:00Z", "diagnosis": "x"},
}


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_token(anonymous: httpx.Client, method: str, path: str) -> None:
    response = anonymous.request(method, path, json=PATIENT)
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "make_token",
    [
        lambda s: s.mint(lifetime=-10),
        lambda s: s.mint(token_type="refresh"),
        lambda s: TestSigner().mint(),
        lambda s: s.mint()[:-4] + "AAAA",
        lambda s: "not-a-jwt",
    ],
    ids=["expired", "refresh", "foreign-key", "tampered", "garbage"],
)
def test_invalid_token_is_401_token_not_valid(
    anonymous: httpx.Client, signer: TestSigner, make_token: Callable[[TestSigner], str]
) -> None:
    response = anonymous.get(
        "/api/patients/", headers={"Authorization": f"Bearer {make_token(signer)}"}
    )
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_method_not_allowed_is_405(api: httpx.Client) -> None:
    response = api.post("/api/patients/1/", json=PATIENT)
    assert response.status_code == 405
    assert response.json() == {"detail": "Method not allowed."}


def test_openapi_document_describes_every_route(anonymous: httpx.Client) -> None:
    response = anonymous.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for resource in RESOURCES:
        assert f"/api/{resource}/" in paths
        assert any(path.startswith(f"/api/{resource}/{{") for path in paths)


def test_health_passes_with_its_database(anonymous: httpx.Client) -> None:
    response = anonymous.get("/health/")
    live = anonymous.get("/health/live")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "pass"
    assert body["service"] == "clinic"
    assert body["checks"]["database"]["status"] == "pass"
    assert live.status_code == 200


def test_metrics_label_routes_by_template(
    api: httpx.Client, make_patient: Callable[..., Json]
) -> None:
    patient = make_patient(api)
    api.get(f"/api/patients/{patient['id']}/")
    # A request is counted just after its response is sent: allow the server a moment.
    deadline = time.monotonic() + 5
    while True:
        metrics = api.get("/metrics/")
        assert metrics.status_code == 200
        if 'route="/api/patients/{patient_id}/"' in metrics.text or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert 'route="/api/patients/{patient_id}/"' in metrics.text
    assert f"/api/patients/{patient['id']}/" not in metrics.text
    assert 'clinic_records_created_total{resource="patient"}' in metrics.text


def _every_endpoint(client: httpx.Client) -> list[httpx.Response]:
    responses = []
    for resource in RESOURCES:
        responses.append(client.get(f"/api/{resource}/"))
        responses.append(client.post(f"/api/{resource}/", json=BODIES[resource]))
        for method in ("GET", "PUT", "PATCH", "DELETE"):
            responses.append(client.request(method, f"/api/{resource}/1/", json=BODIES[resource]))
    return responses


def _assert_unavailable(client: httpx.Client) -> None:
    for response in _every_endpoint(client):
        assert response.status_code == 503, (response.request.url, response.text)
        assert "detail" in response.json()
    started = time.monotonic()
    health = client.get("/health/")
    assert health.status_code == 503
    assert health.json()["status"] == "fail"
    assert health.json()["checks"]["database"]["status"] == "fail"
    assert time.monotonic() - started < 3


def test_database_loss_gives_503_then_recovers_without_restart(
    backend: str,
    database_url: Callable[[str], str],
    own_server: Callable[[str], Any],
    tcp_proxy: Callable[[str], Any],
    signer: TestSigner,
    new_tenant: Callable[[], str],
    tmp_path: Path,
) -> None:
    if backend == "postgresql":
        proxy, url = tcp_proxy(database_url("clinic"))
        lose, restore = proxy.stop, proxy.start
    else:
        # The data directory's parent becomes a plain file: no tenant file can be opened.
        blocker = tmp_path / "volume"
        url = f"sqlite:///{blocker / 'clinic.sqlite3'}"

        def lose() -> None:
            (blocker / "clinic").rename(tmp_path / "moved")
            blocker.rmdir()
            blocker.write_text("the volume is gone")

        def restore() -> None:
            blocker.unlink()

    tenant, later_tenant = new_tenant(), new_tenant()
    with (
        own_server(url) as base,
        httpx.Client(base_url=base, headers=signer.auth_header(tenant=tenant)) as client,
        httpx.Client(base_url=base, headers=signer.auth_header(tenant=later_tenant)) as later,
    ):
        assert client.post("/api/patients/", json=PATIENT).status_code == 201
        lose()
        # A tenant in use and one never seen before are both unavailable.
        _assert_unavailable(client)
        _assert_unavailable(later)
        restore()
        assert client.get("/health/").status_code == 200
        assert later.post("/api/patients/", json=PATIENT).status_code == 201
        assert later.get("/api/patients/").json()["count"] == 1
        if backend == "postgresql":
            assert client.get("/api/patients/").json()["count"] == 1


def test_sqlite_start_without_its_disk_serves_503_until_it_appears(
    own_server: Callable[[str], Any], signer: TestSigner, tmp_path: Path
) -> None:
    blocker = tmp_path / "volume"
    blocker.write_text("not mounted yet")
    with (
        own_server(f"sqlite:///{blocker / 'clinic.sqlite3'}") as base,
        httpx.Client(base_url=base, headers=signer.auth_header(tenant="public")) as client,
    ):
        _assert_unavailable(client)
        blocker.unlink()
        assert client.get("/health/").status_code == 200
        assert client.post("/api/patients/", json=PATIENT).status_code == 201


def test_sqlite_tenant_file_that_cannot_be_opened_is_503_then_recovers(
    own_server: Callable[[str], Any],
    signer: TestSigner,
    tmp_path: Path,
    sqlite_tenant_file: Callable[[str, str], Path],
    new_tenant: Callable[[], str],
) -> None:
    url = f"sqlite:///{tmp_path / 'clinic.sqlite3'}"
    tenant = new_tenant()
    path = sqlite_tenant_file(url, tenant)
    with own_server(url) as base:
        path.mkdir(parents=True)  # a directory where the tenant's file should be
        with httpx.Client(base_url=base, headers=signer.auth_header(tenant=tenant)) as client:
            response = client.get("/api/patients/")
            assert response.status_code == 503
            path.rmdir()
            assert client.get("/api/patients/").json()["count"] == 0


def test_postgresql_connections_killed_by_the_server_are_replaced(
    postgres_url: str, own_server: Callable[[str], Any], signer: TestSigner
) -> None:
    url = postgres_url
    with (
        own_server(url) as base,
        httpx.Client(base_url=base, headers=signer.auth_header(tenant="public")) as client,
    ):
        assert client.post("/api/patients/", json=PATIENT).status_code == 201
        admin = create_engine(url)
        with admin.connect() as connection:
            killed = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": make_url(url).database},
            ).scalar_one()
        admin.dispose()
        assert killed >= 1
        # The default tenant's data is in the public schema.
        admin = create_engine(url)
        with admin.connect() as connection:
            stored = connection.execute(text("SELECT count(*) FROM public.patient")).scalar_one()
        admin.dispose()
        assert stored == 1
        # pool_pre_ping notices the dead connections and opens new ones: no error at all.
        for _ in range(3):
            response = client.get("/api/patients/")
            assert response.status_code == 200
            assert response.json()["count"] == 1
        assert client.get("/health/").status_code == 200


def test_database_errors_hide_bound_values(
    backend: str, database_url: Callable[[str], str], tmp_path: Path
) -> None:
    # A 500 logs the exception: SQLAlchemy must not append the bound values (a patient's
    # name) to its message; asyncpg binds on the server, so PostgreSQL's own error text does
    # not quote them either (an error about the statement, not about the value).
    from clinic.db import tenant_databases
    from clinic.settings import ClinicSettings
    from sqlalchemy import exc as sa_exc

    settings = ClinicSettings(database_url=database_url("clinic"), data_dir=tmp_path)

    async def insert_into_nowhere() -> None:
        databases = tenant_databases(settings)
        try:
            async with databases.connect("public", write=True) as db:
                await db.execute(
                    text("SELECT id FROM patient WHERE name = :name AND no_such_column = 1"),
                    {"name": "Ada Lovelace"},
                )
        finally:
            await databases.dispose()

    with pytest.raises(sa_exc.DBAPIError) as raised:
        asyncio.run(insert_into_nowhere())
    message = str(raised.value)
    assert "SQL parameters hidden" in message
    assert "Ada Lovelace" not in message


def test_not_ready_until_the_signing_keys_load_from_auth(
    shared_database_url: str, signer: TestSigner, make_settings: Callable[[str], Any]
) -> None:
    def make_app(auth_url: str) -> Any:
        settings = make_settings(shared_database_url).model_copy(update={"auth_url": auth_url})
        return create_app(settings)

    assert_not_ready_until_keys_load(make_app, signer, "/api/patients/")
