"""Fixtures of the ``dentiapro`` tests: the installed command run as a real process on the
databases of one installation (real SQLite files and PostgreSQL databases), and, for the
end-to-end checks, the real auth and tenants services serving those same databases."""

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import auth.db
import auth.main
import httpx
import pytest
import tenants.db
import tenants.main
from auth.settings import AuthSettings
from common.db import create_async_db_engine
from common.pytest_plugin import DatabaseUrlFactory
from common.testing import free_port, serve
from sqlalchemy import create_engine, text
from sqlmodel.ext.asyncio.session import AsyncSession
from tenants import crud
from tenants.settings import TenantsSettings

DENTIAPRO = Path(sys.executable).parent / "dentiapro"
SERVICES = ("auth", "clinic", "tenants")
ADMIN_USERNAME = "platform-root"
ADMIN_PASSWORD = "root-test-password-1"
INTERNAL_TOKEN = "cli-tests-internal-token"
# Cheap Argon2 parameters keep the suite fast (auth's own tests measure the real cost).
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost": 1024, "argon2_parallelism": 1}
# How often the test's auth re-reads its key file: a rotation is seen within this.
KEY_RELOAD_INTERVAL = 0.2


class Installation:
    """The databases of one DentiaPro installation on a backend, and the command run on them."""

    def __init__(self, backend: str, data_dir: Path, urls: dict[str, str]) -> None:
        self.backend = backend
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
        self.env.update({"DENTIAPRO_DATA_DIR": str(data_dir), "LOG_LEVEL": "INFO"})
        self.env.update({f"{name.upper()}_DATABASE_URL": url for name, url in urls.items()})
        self.urls = urls
        self.clinic_url = urls.get("clinic")

    def dentiapro(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(DENTIAPRO), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def url(self, service: str) -> str:
        """The database URL ``service`` uses here: the configured one, or its SQLite file
        under the data directory (where the services and the command both look)."""
        return self.urls.get(service) or f"sqlite:///{self.data_dir / f'{service}.sqlite3'}"

    # --- the services' databases, as the services themselves set them up ---

    def auth_settings(self, **overrides: Any) -> AuthSettings:
        values: dict[str, Any] = {
            "database_url": self.url("auth"),
            "data_dir": self.data_dir,
            "admin_username": ADMIN_USERNAME,
            "admin_password": ADMIN_PASSWORD,
            "internal_token": INTERNAL_TOKEN,
            "jwt_key_reload_interval": KEY_RELOAD_INTERVAL,
            "log_level": "WARNING",
            **FAST_ARGON2,
            **overrides,
        }
        return AuthSettings(**values)

    def tenants_settings(self, **overrides: Any) -> TenantsSettings:
        values: dict[str, Any] = {
            "database_url": self.url("tenants"),
            "data_dir": self.data_dir,
            "internal_token": INTERNAL_TOKEN,
            "log_level": "WARNING",
            **overrides,
        }
        return TenantsSettings(**values)

    def migrate_registry(self) -> None:
        tenants.db.migrate(self.tenants_settings())

    def migrate_auth(self) -> None:
        auth.db.migrate(self.auth_settings())

    def delete_tenant(self, schema_name: str) -> None:
        """As ``DELETE /api/tenants/<id>/`` does it (the tenants service's own crud)."""

        async def delete() -> None:
            engine = create_async_db_engine(self.url("tenants"), pool_size=1, max_overflow=0)
            try:
                async with AsyncSession(engine, expire_on_commit=False) as session:
                    tenant = await crud.get_tenant_by_schema_name(
                        session=session, schema_name=schema_name
                    )
                    assert tenant is not None
                    await crud.delete_tenant(session=session, tenant=tenant, default_schema="")
            finally:
                await engine.dispose()

        asyncio.run(delete())

    def count(self, service: str, table: str) -> int:
        """The rows of ``table`` in ``service``'s database."""
        engine = create_engine(self.url(service))
        try:
            with engine.connect() as connection:
                return int(connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())
        finally:
            engine.dispose()

    # --- clinic tenants, as an operator's data would hold them ---

    def add_tenant(self, name: str) -> None:
        """A tenant with clinic data not yet migrated (an empty schema or file)."""
        if self.clinic_url is None:
            self._sqlite_file(name).touch()
            return
        self._sql(
            f'CREATE SCHEMA "{name}"',
            f'CREATE TABLE "{name}".alembic_version (version_num varchar(32) PRIMARY KEY)',
        )

    def add_corrupt_tenant(self, name: str) -> None:
        """A tenant whose migration fails: not a database file; a schema whose tables clash."""
        if self.clinic_url is None:
            self._sqlite_file(name).write_bytes(b"this is not an SQLite database " * 64)
            return
        self.add_tenant(name)
        self._sql(f'CREATE TABLE "{name}".cabinet (id integer)')

    def revision(self, name: str) -> str | None:
        """The clinic revision of tenant ``name`` (None: not migrated)."""
        if self.clinic_url is None:
            with sqlite3.connect(self._sqlite_file(name)) as connection:
                found = connection.execute(
                    "SELECT name FROM sqlite_master WHERE name = 'alembic_version'"
                ).fetchone()
                if found is None:
                    return None
                row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
                return None if row is None else str(row[0])
        engine = create_engine(self.clinic_url)
        try:
            with engine.connect() as connection:
                value = connection.execute(
                    text(f'SELECT version_num FROM "{name}".alembic_version')
                ).scalar()
                return None if value is None else str(value)
        finally:
            engine.dispose()

    def _sqlite_file(self, name: str) -> Path:
        directory = self.data_dir / "clinic"
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{name}.sqlite3"

    def _sql(self, *statements: str) -> None:
        assert self.clinic_url is not None
        engine = create_engine(self.clinic_url)
        try:
            with engine.begin() as connection:
                for statement in statements:
                    connection.execute(text(statement))
        finally:
            engine.dispose()


@pytest.fixture
def installation(backend: str, database_url: DatabaseUrlFactory, tmp_path: Path) -> Installation:
    """On SQLite, the default files under ``DENTIAPRO_DATA_DIR``; on PostgreSQL, a fresh
    database per service named by ``*_DATABASE_URL``."""
    urls = {name: database_url(name) for name in SERVICES} if backend == "postgresql" else {}
    return Installation(backend, tmp_path / "data", urls)


@dataclass
class Services:
    """The real auth and tenants services on the installation's databases."""

    auth: httpx.Client
    tenants: httpx.Client


@contextmanager
def run_services(
    installation: Installation, jwks_refetch_interval: float = 1.0, **auth_overrides: Any
) -> Iterator[Services]:
    """auth (re-reading its key file every KEY_RELOAD_INTERVAL) and the tenants registry it
    asks about tenants, each serving real HTTP; both migrate their databases as they start.
    ``jwks_refetch_interval`` is both services' (JWKS_REFETCH_INTERVAL)."""
    tenants_port = free_port()
    tenants_url = f"http://127.0.0.1:{tenants_port}"
    refetch = {"jwks_refetch_interval": jwks_refetch_interval}
    with ExitStack() as stack:
        settings = installation.auth_settings(tenants_url=tenants_url, **refetch, **auth_overrides)
        auth_url = stack.enter_context(serve(auth.main.create_app(settings)))
        registry = tenants.main.create_app(
            installation.tenants_settings(auth_url=auth_url, **refetch)
        )
        stack.enter_context(serve(registry, port=tenants_port))
        yield Services(
            auth=stack.enter_context(httpx.Client(base_url=auth_url, timeout=15)),
            tenants=stack.enter_context(httpx.Client(base_url=tenants_url, timeout=15)),
        )


@pytest.fixture
def services(installation: Installation) -> Callable[..., AbstractContextManager[Services]]:
    """``with services(**auth_overrides) as running:`` the real auth and tenants services on
    this installation's databases (``run_services``)."""
    return partial(run_services, installation)
