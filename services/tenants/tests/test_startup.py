"""Start-up: migrations, the default tenant, health, metrics, and a database that goes away."""

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from common.db import create_async_db_engine, create_db_engine
from common.pytest_plugin import (
    DatabaseUrlFactory,
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)
from common.testing import TestSigner, assert_not_ready_until_keys_load, serve
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import inspect, text
from sqlmodel import Session, col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from tenants import crud
from tenants.db import migrate
from tenants.main import create_app
from tenants.models import Tenant
from tenants.settings import TenantsSettings

SettingsFactory = Callable[..., TenantsSettings]


def tenants_in(url: str) -> list[Tenant]:
    engine = create_db_engine(url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(Tenant).order_by(col(Tenant.id))).all())
    finally:
        engine.dispose()


def test_migrate_is_idempotent(
    database_url: DatabaseUrlFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings(database_url=database_url("tenants"))
    migrate(settings)
    migrate(settings)
    engine = create_db_engine(settings.database_url)
    try:
        inspector = inspect(engine)
        assert "tenant" in inspector.get_table_names()
        indexes = {index["name"]: index for index in inspector.get_indexes("tenant")}
        assert indexes["ix_tenant_schema_name"]["unique"]
        assert indexes["ix_tenant_domain_url_live"]["unique"]
        with engine.connect() as connection:
            assert (
                connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
                == "0001"
            )
    finally:
        engine.dispose()


def test_default_tenant_is_created_once_with_configured_name(
    database_url: DatabaseUrlFactory, make_settings: SettingsFactory, signer: TestSigner
) -> None:
    url = database_url("tenants")
    first = make_settings(database_url=url, default_tenant_name="Cabinet Dupont")
    with serve(create_app(first, token_verifier=signer.verifier())):
        pass
    second = make_settings(database_url=url, default_tenant_name="Another name")
    with serve(create_app(second, token_verifier=signer.verifier())):
        pass
    [default] = tenants_in(url)
    assert (default.name, default.schema_name, default.domain_url) == (
        "Cabinet Dupont",
        "public",
        "localhost",
    )
    assert default.deleted_at is None


def test_configured_default_tenant_schema_is_protected(
    database_url: DatabaseUrlFactory,
    make_settings: SettingsFactory,
    signer: TestSigner,
    superuser_headers: dict[str, str],
    internal_headers: dict[str, str],
) -> None:
    settings = make_settings(database_url=database_url("tenants"), default_tenant="main_practice")
    with (
        serve(create_app(settings, token_verifier=signer.verifier())) as url,
        httpx.Client(base_url=url, headers={**superuser_headers, **internal_headers}) as client,
    ):
        resolved = client.get("/internal/tenants/resolve/", params={"domain": "localhost"}).json()
        assert resolved["schema_name"] == "main_practice"
        response = client.delete(f"/api/tenants/{resolved['id']}/")
        assert response.status_code == 409
        assert response.json() == {"detail": "The default tenant cannot be deleted."}
        body = {"name": "x", "schema_name": "main_practice", "domain_url": "x.test"}
        response = client.post("/api/tenants/", json=body)
        assert response.status_code == 400
        assert response.json() == {"schema_name": ["This schema name is reserved."]}


def test_concurrent_default_tenant_creation_leaves_one(
    database_url: DatabaseUrlFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings(database_url=database_url("tenants"))
    migrate(settings)

    async def race() -> list[int | None]:
        engine = create_async_db_engine(settings.database_url)
        start = asyncio.Event()

        async def ensure() -> int | None:
            async with AsyncSession(engine) as session:
                await start.wait()
                tenant = await crud.ensure_default_tenant(
                    session=session,
                    schema_name="public",
                    name="Default practice",
                    domain="localhost",
                )
                return tenant.id

        racers = [asyncio.create_task(ensure()) for _ in range(6)]
        await asyncio.sleep(0.05)
        start.set()
        try:
            return await asyncio.gather(*racers)
        finally:
            await engine.dispose()

    ids = asyncio.run(race())
    assert len(ids) == 6
    assert len(set(ids)) == 1
    assert len(tenants_in(settings.database_url)) == 1


def test_start_up_fails_loudly_when_default_domain_is_taken(
    database_url: DatabaseUrlFactory, make_settings: SettingsFactory, signer: TestSigner
) -> None:
    url = database_url("tenants")
    with serve(create_app(make_settings(database_url=url), token_verifier=signer.verifier())):
        pass
    # Switching the default schema while "public" still holds localhost cannot silently succeed.
    moved = create_app(
        make_settings(database_url=url, default_tenant="elsewhere"),
        token_verifier=signer.verifier(),
    )

    async def start() -> None:
        async with moved.router.lifespan_context(moved):
            pass

    with pytest.raises(RuntimeError, match="already uses the domain 'localhost'"):
        asyncio.run(start())


def test_health_checks_the_database(
    database_url: DatabaseUrlFactory, make_settings: SettingsFactory, signer: TestSigner
) -> None:
    settings = make_settings(database_url=database_url("tenants"))
    with serve(create_app(settings, token_verifier=signer.verifier())) as url:
        response = httpx.get(f"{url}/health/")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "pass"
        assert body["service"] == "tenants"
        assert body["checks"]["database"]["status"] == "pass"
        assert httpx.get(f"{url}/health/live").status_code == 200


def _changes(url: str) -> dict[str, float]:
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics/").text)
    counts: dict[str, float] = {}
    for family in families:
        if family.name == "tenants_changes":
            for sample in family.samples:
                if sample.name == "tenants_changes_total":
                    counts[sample.labels["action"]] = sample.value
    return counts


def test_changes_are_counted_by_action(
    base_url: str, api: httpx.Client, new_tenant: Callable[..., dict[str, Any]]
) -> None:
    before = _changes(base_url)
    tenant = new_tenant()
    api.patch(f"/api/tenants/{tenant['id']}/", json={"name": "counted"})
    api.delete(f"/api/tenants/{tenant['id']}/")
    api.post("/api/tenants/", json={})  # refused: not a change
    after = _changes(base_url)
    # Other tests may run in this process at the same time only on other workers.
    for action in ("created", "updated", "deleted"):
        assert after[action] - before.get(action, 0) == 1, action
    metrics = httpx.get(f"{base_url}/metrics/").text
    assert str(tenant["id"]) + "/" not in metrics


def test_postgresql_gone_gives_503_and_health_fails(
    make_settings: SettingsFactory,
    signer: TestSigner,
    superuser_headers: dict[str, str],
    internal_headers: dict[str, str],
) -> None:
    # PostgreSQL only: a SQLite file cannot go away under a running process.
    require_postgres()
    url = create_postgres_database("tenants")
    settings = make_settings(database_url=url)
    with serve(create_app(settings, token_verifier=signer.verifier())) as base:
        drop_postgres_database(url)
        response = httpx.get(f"{base}/api/tenants/", headers=superuser_headers)
        assert response.status_code == 503
        assert response.json() == {"detail": "Database unavailable, try again shortly."}
        health = httpx.get(f"{base}/health/")
        assert health.status_code == 503
        assert health.json()["checks"]["database"]["status"] == "fail"
        resolve = httpx.get(
            f"{base}/internal/tenants/resolve/",
            params={"schema_name": "public"},
            headers=internal_headers,
        )
        assert resolve.status_code == 503
        assert "Traceback" not in resolve.text


def test_not_ready_until_the_signing_keys_load_from_auth(
    database_url: DatabaseUrlFactory, make_settings: SettingsFactory
) -> None:
    superuser = TestSigner()

    def make_app(auth_url: str) -> Any:
        return create_app(make_settings(database_url=database_url("tenants"), auth_url=auth_url))

    assert_not_ready_until_keys_load(make_app, superuser, "/api/tenants/", is_superuser=True)
