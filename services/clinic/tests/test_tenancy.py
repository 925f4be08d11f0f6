"""Tenancy: the token's tenant decides everything; tenants never see one another's data;
a new tenant is provisioned exactly once; ``migrate`` upgrades every tenant."""

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from clinic import crud
from clinic.db import tenant_databases
from clinic.schemas import (
    ALEMBIC_LOCK,
    MIGRATIONS,
    TenantSchemas,
    head_revision,
    migrate,
    tenant_schemas,
)
from clinic.settings import ClinicSettings
from common.db import alembic_config, create_db_engine
from common.listing import ListFilters, ListQuery
from common.pagination import PageRequest
from common.testing import TestSigner
from sqlalchemy import Engine, create_engine, text

Json = dict[str, Any]


@pytest.fixture(scope="module")
def tenant_a() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="module")
def tenant_a_records(
    client_for: Callable[[str | None], httpx.Client], tenant_a: str
) -> dict[str, Json]:
    """Tenant A's patient, cabinet and consultation (once per module and backend)."""
    client = client_for(tenant_a)
    patient = client.post(
        "/api/patients/",
        json={"name": "Alice Tenant-A", "birthdate": "1980-01-01", "contact_number": "0123456"},
    ).json()
    cabinet = client.post(
        "/api/cabinets/",
        json={"name": "Cabinet Tenant-A", "address": "A St", "contact_number": "0123456"},
    ).json()
    consultation = client.post(
        "/api/consultations/",
        json={
            "patient": patient["id"],
            "cabinet": cabinet["id"],
            "date": "2024-01-01T10:00:00Z",
            "diagnosis": "Secret diagnosis",
        },
    ).json()
    return {"patients": patient, "cabinets": cabinet, "consultations": consultation}


@pytest.mark.parametrize("resource", ["patients", "cabinets", "consultations"])
@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_other_tenants_record_is_404_for_every_method(
    api: httpx.Client, tenant_a_records: dict[str, Json], resource: str, method: str
) -> None:
    # ``api`` is this module's tenant B, which never creates records.
    record = tenant_a_records[resource]
    body = {k: v for k, v in record.items() if k not in ("id", "created_at", "updated_at")}
    response = api.request(method, f"/api/{resource}/{record['id']}/", json=body)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_other_tenants_records_are_untouched_by_tenant_b(
    api: httpx.Client,
    server: str,
    tenant_a_records: dict[str, Json],
    tenant_a: str,
    client_for: Callable[[str | None], httpx.Client],
) -> None:
    for resource, record in tenant_a_records.items():
        api.delete(f"/api/{resource}/{record['id']}/")
        api.patch(f"/api/{resource}/{record['id']}/", json={"name": "changed", "diagnosis": "x"})
    owner = client_for(tenant_a)
    for resource, record in tenant_a_records.items():
        assert owner.get(f"/api/{resource}/{record['id']}/").json() == record


def test_other_tenants_records_never_appear_in_lists_counts_or_search(
    fresh_api: httpx.Client, tenant_a_records: dict[str, Json]
) -> None:
    searches = {
        "patients": tenant_a_records["patients"]["name"],
        "cabinets": tenant_a_records["cabinets"]["name"],
        "consultations": "Secret",
    }
    for resource, term in searches.items():
        for params in ({}, {"search": term}, {"page": "last"}):
            body = fresh_api.get(f"/api/{resource}/", params=params).json()
            assert body == {"count": 0, "next": None, "previous": None, "results": []}
    filtered = fresh_api.get(
        "/api/consultations/", params={"patient": tenant_a_records["patients"]["id"]}
    ).json()
    assert filtered["count"] == 0


@pytest.mark.parametrize("field", ["patient", "cabinet"])
def test_consultation_cannot_reference_another_tenants_records(
    fresh_api: httpx.Client, tenant_a_records: dict[str, Json], field: str
) -> None:
    # Tenant B owns the other kind of record only: A's id in ``field`` must not resolve (ids
    # start at 1 in every tenant, so B owning one of that kind could share A's id).
    other = "cabinet" if field == "patient" else "patient"
    bodies = {
        "patient": {"name": "B", "birthdate": "1980-01-01", "contact_number": "0123456"},
        "cabinet": {"name": "B", "address": "B St", "contact_number": "0123456"},
    }
    own_id = fresh_api.post(f"/api/{other}s/", json=bodies[other]).json()["id"]
    foreign_id = tenant_a_records[f"{field}s"]["id"]
    response = fresh_api.post(
        "/api/consultations/",
        json={
            other: own_id,
            field: foreign_id,
            "date": "2024-01-01T10:00:00Z",
            "diagnosis": "x",
        },
    )
    assert response.status_code == 400
    assert response.json() == {field: [f'Invalid pk "{foreign_id}" - object does not exist.']}


def test_x_tenant_header_is_ignored(
    fresh_api: httpx.Client,
    client_for: Callable[[str | None], httpx.Client],
    new_tenant: Callable[[], str],
    make_cabinet: Callable[..., Json],
) -> None:
    victim = new_tenant()
    make_cabinet(client_for(victim), name="Victim cabinet")
    body = fresh_api.get("/api/cabinets/", headers={"X-Tenant": victim}).json()
    assert body["count"] == 0
    created = fresh_api.post(
        "/api/cabinets/",
        json={"name": "Mine", "address": "A", "contact_number": "0123456"},
        headers={"X-Tenant": victim},
    ).json()
    assert client_for(victim).get("/api/cabinets/?search=Mine").json()["count"] == 0
    assert fresh_api.get(f"/api/cabinets/{created['id']}/").status_code == 200


@pytest.mark.parametrize(
    "bad_tenant",
    ["Public", "1abc", "a-b", 'x"; DROP SCHEMA public CASCADE; --', "pg_catalog", "a" * 64, ""],
)
def test_token_with_invalid_tenant_name_is_401(
    anonymous: httpx.Client, signer: TestSigner, bad_tenant: str
) -> None:
    response = anonymous.get("/api/patients/", headers=signer.auth_header(tenant=bad_tenant))
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_tenant_data_lives_in_its_own_schema_or_file(
    shared_backend: str,
    shared_database_url: str,
    fresh_api: httpx.Client,
    make_patient: Callable[..., Json],
    sqlite_tenant_file: Callable[[str, str], Path],
    tenant_of: Callable[[httpx.Client], str],
) -> None:
    make_patient(fresh_api)
    tenant = tenant_of(fresh_api)
    if shared_backend == "sqlite":
        path = sqlite_tenant_file(shared_database_url, tenant)
        engine = create_engine(f"sqlite:///{path}")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM patient")).scalar_one() == 1
        engine.dispose()
        return
    engine = create_engine(shared_database_url)
    with engine.connect() as connection:
        assert (
            connection.execute(text(f'SELECT count(*) FROM "{tenant}".patient')).scalar_one() == 1
        )
        # Nothing shared references tenant tables; no foreign key leaves the schema.
        outside = connection.execute(
            text(
                "SELECT count(*) FROM information_schema.referential_constraints r "
                "JOIN information_schema.table_constraints t "
                "ON t.constraint_name = r.unique_constraint_name "
                "AND t.constraint_schema = r.unique_constraint_schema "
                "WHERE (r.constraint_schema = :s) <> (t.table_schema = :s)"
            ),
            {"s": tenant},
        ).scalar_one()
        assert outside == 0
    engine.dispose()


def test_a_tenant_whose_data_an_operator_dropped_is_set_up_again_not_a_500(
    shared_backend: str,
    shared_database_url: str,
    fresh_api: httpx.Client,
    make_patient: Callable[..., Json],
    sqlite_tenant_file: Callable[[str, str], Path],
    tenant_of: Callable[[httpx.Client], str],
) -> None:
    make_patient(fresh_api)
    tenant = tenant_of(fresh_api)
    if shared_backend == "sqlite":
        path = sqlite_tenant_file(shared_database_url, tenant)
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
    else:
        engine = create_engine(shared_database_url)
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{tenant}" CASCADE'))
        engine.dispose()
        # The running service learns of it from the failed statement: one 503, never a 500.
        first = fresh_api.get("/api/patients/")
        assert first.status_code == 503
        assert first.json() == {"detail": "Database unavailable, try again shortly."}

    listed = fresh_api.get("/api/patients/")
    assert listed.status_code == 200
    assert listed.json()["count"] == 0
    make_patient(fresh_api)
    assert fresh_api.get("/api/patients/").json()["count"] == 1


def _alembic_rows(url: str, tenant: str) -> list[str]:
    if url.startswith("sqlite"):
        path = ClinicSettings(database_url=url).sqlite_tenant_dir / f"{tenant}.sqlite3"
        url, table = f"sqlite:///{path}", "alembic_version"
    else:
        table = f'"{tenant}".alembic_version'
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [
                str(r)
                for r in connection.execute(text(f"SELECT version_num FROM {table}")).scalars()
            ]
    finally:
        engine.dispose()


def test_twenty_concurrent_first_requests_provision_a_new_tenant_once(
    backend: str,
    database_url: Callable[[str], str],
    own_server: Callable[[str], Any],
    signer: TestSigner,
    new_tenant: Callable[[], str],
) -> None:
    url = database_url("clinic")
    tenant = new_tenant()
    headers = signer.auth_header(tenant=tenant)
    # Two servers (two processes' worth of state) race: the advisory lock must hold too.
    with own_server(url) as first, own_server(url) as second:
        with ThreadPoolExecutor(20) as pool:
            responses = list(
                pool.map(
                    lambda i: httpx.post(
                        f"{(first, second)[i % 2]}/api/cabinets/",
                        json={"name": f"C{i}", "address": "A", "contact_number": "0123456"},
                        headers=headers,
                        timeout=60,
                    ),
                    range(20),
                )
            )
        assert [r.status_code for r in responses] == [201] * 20
        listed = httpx.get(f"{first}/api/cabinets/", headers=headers).json()
        assert listed["count"] == 20
    assert _alembic_rows(url, tenant) == [head_revision()]
    if backend == "postgresql":
        engine = create_engine(url)
        with engine.connect() as connection:
            schemas = connection.execute(
                text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": tenant}
            ).scalar_one()
        engine.dispose()
        assert schemas == 1


def _engine(settings: ClinicSettings, tenant: str) -> Engine:
    """A synchronous engine on ``tenant``'s data: its SQLite file, or the clinic database."""
    if settings.uses_sqlite:
        return create_db_engine(f"sqlite:///{settings.sqlite_tenant_dir / tenant}.sqlite3")
    return create_db_engine(settings.database_url)


def _table(settings: ClinicSettings, tenant: str, name: str) -> str:
    return name if settings.uses_sqlite else f'"{tenant}".{name}'


def _downgrade(settings: ClinicSettings, tenant: str, revision: str) -> None:
    """Take ``tenant``'s schema (or file) back to ``revision``, as clinic.schemas upgrades it."""
    engine = _engine(settings, tenant)
    config = alembic_config(MIGRATIONS, settings.database_url)
    try:
        with ALEMBIC_LOCK, engine.begin() as connection:
            if not settings.uses_sqlite:
                connection = connection.execution_options(schema_translate_map={None: tenant})
            config.attributes["connection"] = connection
            config.attributes["tenant_schema"] = None if settings.uses_sqlite else tenant
            command.downgrade(config, revision)
    finally:
        engine.dispose()


def _execute(settings: ClinicSettings, tenant: str, sql: str) -> None:
    engine = _engine(settings, tenant)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(sql)
    finally:
        engine.dispose()


async def _patient_names(settings: ClinicSettings, tenant: str, search: str = "") -> list[str]:
    """What clinic lists for ``tenant`` (provisioning it first, as a first request would)."""
    databases = tenant_databases(settings)
    try:
        async with databases.connect(tenant, write=False) as db:
            query = ListQuery(PageRequest(), ListFilters(search=search))
            page = await crud.list_patients(db=db, query=query)
            return [row.name for row in page.results]
    finally:
        await databases.dispose()


@pytest.fixture
def settings(database_url: Callable[[str], str], tmp_path: Path) -> ClinicSettings:
    """Clinic settings on a fresh database of the test's backend."""
    return ClinicSettings(database_url=database_url("clinic"), data_dir=tmp_path)


@pytest.fixture
def schemas(settings: ClinicSettings) -> Any:
    schemas = tenant_schemas(settings)
    yield schemas
    schemas.dispose()


def test_records_written_before_the_search_column_are_found_after_the_upgrade(
    backend: str, settings: ClinicSettings, schemas: TenantSchemas, new_tenant: Callable[[], str]
) -> None:
    """Migration 0002 (search over a stored lower-cased text) on a tenant that has data."""
    url = settings.database_url
    tenant = new_tenant()
    schemas.upgrade(tenant)
    _downgrade(settings, tenant, "0001")
    if backend == "postgresql":
        _as_first_0001(settings, tenant)
    now = "2024-01-01 00:00:00"
    _execute(
        settings,
        tenant,
        f"INSERT INTO {_table(settings, tenant, 'patient')} "
        "(name, birthdate, contact_number, created_at, updated_at) "
        f"VALUES ('Élodie Martin', '1990-01-01', '0612', '{now}', '{now}')",
    )
    assert _alembic_rows(url, tenant) == ["0001"]

    for term in ("élodie", "MARTIN", "0612"):  # the first one upgrades to head first
        assert asyncio.run(_patient_names(settings, tenant, term)) == ["Élodie Martin"], term
    assert asyncio.run(_patient_names(settings, tenant, "lovelace")) == []
    assert _alembic_rows(url, tenant) == [head_revision()]
    if backend == "postgresql":  # the first 0001's per-column indexes are gone
        assert _trigram_indexes(url, tenant) == {
            "ix_cabinet_search_trgm",
            "ix_patient_search_trgm",
            "ix_consultation_search_trgm",
        }


def _as_first_0001(settings: ClinicSettings, tenant: str) -> None:
    """Give a PostgreSQL schema the trigram indexes the first 0001 made (one per column)."""
    _execute(settings, tenant, f'DROP INDEX "{tenant}".ix_patient_search_trgm')
    for column in ("name", "email", "contact_number"):
        _execute(
            settings,
            tenant,
            f'CREATE INDEX ix_patient_{column}_trgm ON "{tenant}".patient '
            f"USING gin ({column} public.gin_trgm_ops)",
        )


def _trigram_indexes(url: str, tenant: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = :s AND indexname LIKE :p"
                ),
                {"s": tenant, "p": "%trgm"},
            )
            return {str(row[0]) for row in rows}
    finally:
        engine.dispose()


def test_migrate_upgrades_every_tenant(
    settings: ClinicSettings, schemas: TenantSchemas, new_tenant: Callable[[], str]
) -> None:
    url = settings.database_url
    old, current = new_tenant(), new_tenant()
    for tenant in (old, current):
        schemas.upgrade(tenant)
    # Take one tenant back to before the first revision, as if it predated it.
    _downgrade(settings, old, "base")
    assert _alembic_rows(url, old) == []

    assert set(schemas.tenants()) >= {"public", old, current}
    migrate(settings)
    for tenant in ("public", old, current):
        assert _alembic_rows(url, tenant) == [head_revision()]


def test_a_schema_migrated_by_a_newer_release_is_served_as_it_is(
    settings: ClinicSettings,
    schemas: TenantSchemas,
    new_tenant: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rollback: a later release migrated this tenant to a revision this one does not know.
    Migrations are expand-then-contract, so this release serves it; it must not fail (Alembic
    cannot locate the revision) nor try to migrate it."""
    url = settings.database_url
    tenant = new_tenant()
    schemas.upgrade(tenant)
    table = _table(settings, tenant, "alembic_version")
    _execute(settings, tenant, f"UPDATE {table} SET version_num = 'f00dfeedbeef'")
    now = "2024-01-01 00:00:00"
    _execute(
        settings,
        tenant,
        f"INSERT INTO {_table(settings, tenant, 'patient')} "
        "(name, birthdate, contact_number, created_at, updated_at) "
        f"VALUES ('Rolled Back', '1990-01-01', '0612', '{now}', '{now}')",
    )
    # A new process: nothing provisioned yet.
    assert asyncio.run(_patient_names(settings, tenant)) == ["Rolled Back"]
    assert _alembic_rows(url, tenant) == ["f00dfeedbeef"]
    assert "newer than this release knows" in caplog.text


def test_many_new_tenants_provisioned_concurrently_in_one_process(
    client_for: Callable[[str | None], httpx.Client], new_tenant: Callable[[], str]
) -> None:
    # Alembic's ``op``/``context`` are process-wide proxies: two upgrades running at once in
    # one process must not touch each other's schemas.
    tenants = [new_tenant() for _ in range(8)]

    def first_request(tenant: str) -> tuple[str, int, int]:
        client = client_for(tenant)
        created = client.post(
            "/api/cabinets/", json={"name": tenant, "address": "A", "contact_number": "0123456"}
        )
        listed = client.get("/api/cabinets/").json()
        return tenant, created.status_code, listed["count"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(first_request, tenants))
    assert [(status, count) for _, status, count in results] == [(201, 1)] * 8
