"""Tenant schemas: creating and migrating each tenant's tables (synchronous, for Alembic).

PostgreSQL: one schema per tenant in the clinic database, with its own ``alembic_version``.
SQLite: one database file per tenant. Alembic runs on psycopg2 (or sqlite3): the service calls
``upgrade`` in a thread on a tenant's first request in a process, ``dentiapro migrate`` calls
it for every tenant. It is idempotent and safe when many callers race: upgrades in one process
take turns (``ALEMBIC_LOCK``), processes take turns through a PostgreSQL advisory lock, and a
tenant already at head (or at a newer release's revision) costs one quick look.
"""

import hashlib
import logging
import re
import threading
from pathlib import Path

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
from sqlalchemy import Connection, Engine, event, text

from clinic.settings import ClinicSettings

log = logging.getLogger("dentiapro.clinic.schemas")

MIGRATIONS = migrations_dir(__file__)
SCHEMA_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
SQLITE_SUFFIX = ".sqlite3"
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


def run_alembic(connection: Connection, schema: str | None) -> None:
    """Run the Alembic tree on ``connection`` (its schema map already points at ``schema``).

    Callers hold ``ALEMBIC_LOCK``.
    """
    config = alembic_config(MIGRATIONS, connection.engine.url.render_as_string(False))
    config.attributes["connection"] = connection
    config.attributes["tenant_schema"] = schema
    command.upgrade(config, "head")


class TenantSchemas:
    """Every tenant's schema (or file) in the clinic database."""

    def __init__(self, settings: ClinicSettings) -> None:
        self.settings = settings
        self.default_tenant = settings.default_tenant
        self._head = head_revision()
        self._known = known_revisions(MIGRATIONS)

    def upgrade(self, tenant: str) -> bool:
        """Create ``tenant``'s schema if needed and migrate it to head; True if anything ran."""
        if not valid_schema_name(tenant):
            raise ValueError(f"invalid tenant schema name: {tenant!r}")
        return self._upgrade(tenant)

    def tenants(self) -> list[str]:
        """Every tenant that has data here (provisioned schemas or files), default first."""
        raise NotImplementedError

    def dispose(self) -> None:
        raise NotImplementedError

    def _upgrade(self, tenant: str) -> bool:
        raise NotImplementedError

    def _up_to_date(self, version: str | None) -> bool:
        """Nothing to migrate: at this release's head, or at a newer release's revision."""
        return version == self._head or is_newer_release(MIGRATIONS, version, self._known)

    def _default_first(self, found: list[str]) -> list[str]:
        return [self.default_tenant, *(s for s in found if s != self.default_tenant)]


class PostgresSchemas(TenantSchemas):
    def __init__(self, settings: ClinicSettings) -> None:
        super().__init__(settings)
        # Provisioning is rare (a tenant's first request in a process): no pool to keep.
        self.engine: Engine = create_db_engine(
            settings.database_url,
            pool_size=1,
            max_overflow=2,
            application_name="dentiapro-clinic-migrations",
        )

    def _upgrade(self, tenant: str) -> bool:
        with self.engine.connect() as connection:
            # Fast path: the schema is already at head (the common case after a restart).
            current = connection.execute(
                text("SELECT to_regclass(:table) IS NOT NULL"),
                {"table": f"{quote_identifier(tenant)}.alembic_version"},
            ).scalar_one()
            if current and self._up_to_date(self._version(connection, tenant)):
                return False
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
            run_alembic(bound, tenant)
        log.info("tenant schema provisioned", extra={"tenant": tenant})
        return True

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
        return self._default_first(found)

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_autocommit(dbapi_connection: object, _: object) -> None:
    # Alembic's transaction is ours (engine.begin()): pysqlite must not open its own.
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]


def _sqlite_begin_immediate(connection: Connection) -> None:
    # Take the write lock up front: a request's connection reading the file meanwhile waits
    # for the migration instead of failing halfway through it.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class SqliteSchemas(TenantSchemas):
    def __init__(self, settings: ClinicSettings) -> None:
        super().__init__(settings)
        self.directory = settings.sqlite_tenant_dir

    def path_for(self, tenant: str) -> Path:
        return self.directory / f"{tenant}{SQLITE_SUFFIX}"

    def _engine(self, tenant: str) -> Engine:
        self.directory.mkdir(parents=True, exist_ok=True)
        # One connection, disposed after the upgrade: provisioning is rare.
        engine = create_db_engine(f"sqlite:///{self.path_for(tenant)}", pool_size=1)
        event.listen(engine, "connect", _sqlite_autocommit)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine

    def _upgrade(self, tenant: str) -> bool:
        engine = self._engine(tenant)
        try:
            with engine.connect() as connection:
                if self._up_to_date(self._version(connection)):
                    return False
            with ALEMBIC_LOCK, engine.begin() as connection:
                run_alembic(connection, None)
        finally:
            engine.dispose()
        log.info("tenant database provisioned", extra={"tenant": tenant})
        return True

    @staticmethod
    def _version(connection: Connection) -> str | None:
        exists = connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).first()
        if exists is None:
            return None
        row = connection.exec_driver_sql("SELECT version_num FROM alembic_version").first()
        return None if row is None else str(row[0])

    def tenants(self) -> list[str]:
        found = sorted(
            path.name.removesuffix(SQLITE_SUFFIX)
            for path in self.directory.glob(f"*{SQLITE_SUFFIX}")
            if valid_schema_name(path.name.removesuffix(SQLITE_SUFFIX))
        )
        return self._default_first(found)

    def dispose(self) -> None:
        """Nothing held between upgrades."""


def tenant_schemas(settings: ClinicSettings) -> TenantSchemas:
    return SqliteSchemas(settings) if settings.uses_sqlite else PostgresSchemas(settings)


def migrate(settings: ClinicSettings) -> None:
    """Upgrade every tenant schema (or file) to the latest revision; the default tenant too."""
    schemas = tenant_schemas(settings)
    try:
        for tenant in schemas.tenants():
            schemas.upgrade(tenant)
            log.info("tenant migrated", extra={"tenant": tenant})
    finally:
        schemas.dispose()
