"""Tenant databases: one PostgreSQL schema, or one SQLite file, per tenant.

PostgreSQL: one engine for the service; each session binds the (schema-less) tables to the
caller's schema with ``schema_translate_map``, per statement, so a pooled connection never
carries one tenant's ``search_path`` into another's request. SQLite: one engine per tenant
file, cached and bounded.

A tenant is provisioned on its first use in this process (schema + Alembic upgrade, with
``alembic_version`` inside the tenant's schema), exactly once even when many first requests
arrive together: a per-tenant lock in the process, and on PostgreSQL a transaction-level
advisory lock across processes. Later requests only look at an in-memory set.
"""

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.script import ScriptDirectory
from common.db import (
    alembic_config,
    create_db_engine,
    is_newer_release,
    known_revisions,
    migrations_dir,
    without_statement_timeout,
)
from common.errors import DATABASE_UNAVAILABLE, ServiceUnavailable
from common.observability import track_engine
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy import exc as sa_exc
from sqlmodel import Session

from clinic.settings import ClinicSettings

log = logging.getLogger("dentiapro.clinic.db")

MIGRATIONS = migrations_dir(__file__)
SCHEMA_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
SQLITE_SUFFIX = ".sqlite3"
# PostgreSQL's invalid_schema_name and undefined_table: a provisioned tenant's schema is gone.
MISSING_SCHEMA_CODES = frozenset({"3F000", "42P01"})
# Alembic's ``op`` and ``context`` are process-wide proxies: two upgrades running at once in
# one process (two tenants' first requests) would run each other's operations. Upgrades in a
# process therefore take turns; other processes are kept apart by the database's own locks.
ALEMBIC_LOCK = threading.Lock()


def valid_schema_name(name: str) -> bool:
    return SCHEMA_NAME_RE.fullmatch(name) is not None and not name.startswith("pg_")


def quote_identifier(name: str) -> str:
    # Names are validated first; quoting is the second belt.
    return '"' + name.replace('"', '""') + '"'


def advisory_key(schema: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock`` (Python's hash() is salted)."""
    digest = hashlib.blake2b(f"clinic:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config(MIGRATIONS, "sqlite://")).get_current_head()


def _upgrade(connection: Connection, schema: str | None) -> None:
    """Run the Alembic tree on ``connection`` (its schema map already points at ``schema``).

    Callers hold ``ALEMBIC_LOCK``.
    """
    config = alembic_config(MIGRATIONS, connection.engine.url.render_as_string(False))
    config.attributes["connection"] = connection
    config.attributes["tenant_schema"] = schema
    command.upgrade(config, "head")


class TenantDatabases:
    """Sessions and provisioning for every tenant; held on ``app.state.databases``."""

    def __init__(self, settings: ClinicSettings) -> None:
        self.settings = settings
        self.default_tenant = settings.default_tenant
        self._provisioned: set[str] = set()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._head = head_revision()
        self._known = known_revisions(MIGRATIONS)

    # --- what callers use ---

    @contextmanager
    def session(self, tenant: str, *, write: bool) -> Iterator[Session]:
        """A session on ``tenant``'s data, provisioned first if needed; closed afterwards.

        ``write`` sessions take the write lock at BEGIN on SQLite, so a read-then-write
        request cannot interleave with another writer (two PUTs never mix).
        """
        self.ensure_tenant(tenant)
        try:
            with Session(self._bind(tenant, write=write), expire_on_commit=False) as session:
                yield session
        except sa_exc.ProgrammingError as exc:
            if getattr(exc.orig, "pgcode", None) not in MISSING_SCHEMA_CODES:
                raise
            # An operator dropped this tenant's schema under the running service: set it up
            # again on the next request rather than fail every request until a restart.
            log.warning("tenant schema missing; provisioning it again", extra={"tenant": tenant})
            self.forget(tenant)
            raise ServiceUnavailable(DATABASE_UNAVAILABLE) from exc

    def ensure_tenant(self, tenant: str) -> None:
        if tenant in self._provisioned:
            return
        if not valid_schema_name(tenant):
            raise ValueError(f"invalid tenant schema name: {tenant!r}")
        with self._lock_for(tenant):
            if tenant in self._provisioned:
                return
            self._provision(tenant)
            self._provisioned.add(tenant)

    def check(self) -> None:
        """Health check: the default tenant's database is there and answers."""
        with self.session(self.default_tenant, write=False) as session:
            session.execute(text("SELECT 1"))

    def tenants(self) -> list[str]:
        """Every tenant that has data here (provisioned schemas or files), default first."""
        raise NotImplementedError

    def dispose(self) -> None:
        raise NotImplementedError

    # --- backend specifics ---

    def _bind(self, tenant: str, *, write: bool) -> Engine:
        raise NotImplementedError

    def _provision(self, tenant: str) -> None:
        raise NotImplementedError

    def _up_to_date(self, version: str | None) -> bool:
        """Nothing to migrate: at this release's head, or at a newer release's revision."""
        return version == self._head or is_newer_release(MIGRATIONS, version, self._known)

    def _lock_for(self, tenant: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(tenant, threading.Lock())

    def forget(self, tenant: str) -> None:
        """Provision ``tenant`` again on its next use (after an operator dropped its data)."""
        self._provisioned.discard(tenant)


class PostgresTenants(TenantDatabases):
    def __init__(self, settings: ClinicSettings) -> None:
        super().__init__(settings)
        self.engine = create_db_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            application_name="dentiapro-clinic",
        )
        track_engine(self.engine)
        self._bound: dict[str, Engine] = {}

    def _bind(self, tenant: str, *, write: bool) -> Engine:
        # Option engines share the one pool; cache them so each tenant costs one small object.
        bound = self._bound.get(tenant)
        if bound is None:
            bound = self.engine.execution_options(schema_translate_map={None: tenant})
            self._bound[tenant] = bound
        return bound

    def _provision(self, tenant: str) -> None:
        with self.engine.connect() as connection:
            # Fast path: the schema is already at head (the common case after a restart).
            current = connection.execute(
                text(
                    "SELECT to_regclass(:table) IS NOT NULL",
                ),
                {"table": f"{quote_identifier(tenant)}.alembic_version"},
            ).scalar_one()
            if current and self._up_to_date(self._version(connection, tenant)):
                return
        with ALEMBIC_LOCK, self.engine.begin() as connection:
            # Serialises provisioning of this schema across every process; released at commit.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(tenant)}
            )
            without_statement_timeout(connection)
            # Ask the catalog with a query (a fresh snapshot), not CREATE SCHEMA IF NOT EXISTS:
            # that consults this backend's cache, which may still say "absent" after another
            # process created the schema while we waited for the lock.
            exists = connection.execute(
                text("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :schema)"),
                {"schema": tenant},
            ).scalar_one()
            if not exists:
                connection.exec_driver_sql(f"CREATE SCHEMA {quote_identifier(tenant)}")
            bound = connection.execution_options(schema_translate_map={None: tenant})
            _upgrade(bound, tenant)
        log.info("tenant schema provisioned", extra={"tenant": tenant})

    @staticmethod
    def _version(connection: Connection, tenant: str) -> str | None:
        row = connection.exec_driver_sql(
            f"SELECT version_num FROM {quote_identifier(tenant)}.alembic_version"
        ).first()
        return None if row is None else str(row[0])

    def tenants(self) -> list[str]:
        with self.engine.connect() as connection:
            # The clinic database is the clinic's own: every schema with an alembic_version
            # table is a tenant (whatever revision it is at).
            rows = connection.execute(
                text(
                    "SELECT table_schema FROM information_schema.tables "
                    "WHERE table_name = 'alembic_version' ORDER BY table_schema"
                )
            ).scalars()
            found = [str(schema) for schema in rows if valid_schema_name(str(schema))]
        return [self.default_tenant, *(s for s in found if s != self.default_tenant)]

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_begin(connection: Connection) -> None:
    # pysqlite's own transaction handling is off (see _sqlite_connect): BEGIN IMMEDIATE takes
    # the write lock up front for writes, so two read-modify-write requests queue instead of
    # interleaving (or failing with "database is locked" when both try to upgrade their lock).
    mode = "IMMEDIATE" if connection.get_execution_options().get("sqlite_write") else "DEFERRED"
    connection.exec_driver_sql(f"BEGIN {mode}")


def _sqlite_connect(dbapi_connection: Any, _: Any) -> None:
    # We issue BEGIN ourselves (see _sqlite_begin). The shared engine already registers a
    # Unicode-aware lower(), which search relies on.
    dbapi_connection.isolation_level = None


class SqliteTenants(TenantDatabases):
    def __init__(self, settings: ClinicSettings) -> None:
        super().__init__(settings)
        self.directory = settings.sqlite_tenant_dir
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_guard = threading.Lock()

    def path_for(self, tenant: str) -> Path:
        return self.directory / f"{tenant}{SQLITE_SUFFIX}"

    def engine_for(self, tenant: str) -> Engine:
        with self._engines_guard:
            engine = self._engines.get(tenant)
            if engine is not None:
                self._engines.move_to_end(tenant)
                return engine
            engine = self._create_engine(tenant)
            self._engines[tenant] = engine
            while len(self._engines) > self.settings.max_sqlite_engines:
                _, evicted = self._engines.popitem(last=False)
                # Connections in use finish normally; the pool closes them when returned.
                evicted.dispose(close=False)
            return engine

    def _create_engine(self, tenant: str) -> Engine:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            # The data directory is gone or unusable: the database is unavailable, not a bug.
            raise ServiceUnavailable(DATABASE_UNAVAILABLE) from exc
        engine = create_db_engine(
            f"sqlite:///{self.path_for(tenant)}",
            pool_size=5,
            max_overflow=self.settings.db_pool_size + self.settings.db_max_overflow,
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        track_engine(engine)
        return engine

    def _bind(self, tenant: str, *, write: bool) -> Engine:
        if not self.path_for(tenant).exists():
            # The file was removed (or its volume unmounted) under an open engine, whose
            # connections would keep writing to the unlinked file: start over from the disk.
            self._drop_engine(tenant)
            self.forget(tenant)
            self.ensure_tenant(tenant)
        engine = self.engine_for(tenant)
        return engine.execution_options(sqlite_write=True) if write else engine

    def _provision(self, tenant: str) -> None:
        engine = self.engine_for(tenant)
        try:
            with engine.connect() as connection:
                if self._up_to_date(self._version(connection)):
                    return
            with ALEMBIC_LOCK, engine.execution_options(sqlite_write=True).begin() as connection:
                _upgrade(connection, None)
        except sa_exc.OperationalError:
            # Do not keep an engine on a file that cannot be opened; retry on the next request.
            self._drop_engine(tenant)
            raise
        log.info("tenant database provisioned", extra={"tenant": tenant})

    @staticmethod
    def _version(connection: Connection) -> str | None:
        exists = connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).first()
        if exists is None:
            return None
        row = connection.exec_driver_sql("SELECT version_num FROM alembic_version").first()
        return None if row is None else str(row[0])

    def _drop_engine(self, tenant: str) -> None:
        with self._engines_guard:
            engine = self._engines.pop(tenant, None)
        if engine is not None:
            engine.dispose()

    def tenants(self) -> list[str]:
        found = sorted(
            path.name.removesuffix(SQLITE_SUFFIX)
            for path in self.directory.glob(f"*{SQLITE_SUFFIX}")
            if valid_schema_name(path.name.removesuffix(SQLITE_SUFFIX))
        )
        return [self.default_tenant, *(s for s in found if s != self.default_tenant)]

    def dispose(self) -> None:
        with self._engines_guard:
            engines = list(self._engines.values())
            self._engines.clear()
        for engine in engines:
            engine.dispose()


def tenant_databases(settings: ClinicSettings) -> TenantDatabases:
    return SqliteTenants(settings) if settings.uses_sqlite else PostgresTenants(settings)


def migrate(settings: ClinicSettings) -> None:
    """Upgrade every tenant schema (or file) to the latest revision; the default tenant too."""
    databases = tenant_databases(settings)
    try:
        for tenant in databases.tenants():
            databases.ensure_tenant(tenant)
            log.info("tenant migrated", extra={"tenant": tenant})
    finally:
        databases.dispose()
