"""Tenant databases on the request path: one PostgreSQL schema, or one SQLite file, per tenant.

PostgreSQL: one async engine (asyncpg) for the service; each tenant's connections bind the
(schema-less) tables to its schema with ``schema_translate_map``, per statement, so a pooled
connection never carries one tenant's ``search_path`` into another's request. SQLite: one async
engine (aiosqlite) per tenant file, cached and bounded.

Reads run in autocommit (a single SELECT needs no BEGIN/ROLLBACK around it); writes in one
transaction, committed before the response is sent (SQLite: ``BEGIN IMMEDIATE``, so a
read-then-write request cannot interleave with another writer).

A tenant is provisioned (``clinic.schemas``) on its first use in this process, exactly once even
when many first requests arrive together; later requests only look at an in-memory set.
"""

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from common.db import create_async_db_engine
from common.errors import DATABASE_UNAVAILABLE, ServiceUnavailable
from common.observability import track_engine
from sqlalchemy import Connection, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from clinic.schemas import (
    SQLITE_SUFFIX,
    PostgresSchemas,
    SqliteSchemas,
    TenantSchemas,
    tenant_schemas,
    valid_schema_name,
)
from clinic.settings import ClinicSettings

log = logging.getLogger("dentiapro.clinic.db")

__all__ = ["SQLITE_SUFFIX", "TenantDatabases", "tenant_databases", "valid_schema_name"]

# PostgreSQL's invalid_schema_name and undefined_table: a provisioned tenant's schema is gone.
MISSING_SCHEMA_CODES = frozenset({"3F000", "42P01"})
READ = {"isolation_level": "AUTOCOMMIT"}


class TenantDatabases:
    """Connections and provisioning for every tenant; held on ``app.state.databases``."""

    def __init__(self, settings: ClinicSettings, schemas: TenantSchemas) -> None:
        self.settings = settings
        self.default_tenant = settings.default_tenant
        self.schemas = schemas
        self._provisioned: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    # --- what callers use ---

    @asynccontextmanager
    async def connect(
        self, tenant: str, *, write: bool, transaction: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A connection to ``tenant``'s data (provisioned first if needed), committed on a
        clean exit. PostgreSQL runs every statement on its own (autocommit) unless
        ``transaction`` asks for one; SQLite runs a write in one ``BEGIN IMMEDIATE``
        transaction."""
        self._check_still_there(tenant)
        await self.ensure_tenant(tenant)
        try:
            async with self._engine(tenant, write=write).connect() as connection:
                if transaction:
                    await self._begin(connection)
                yield connection
                if write:
                    # Not engine.begin(): a write that hits a constraint rolls back and asks
                    # which reference failed, on the same connection (clinic.crud).
                    await connection.commit()
        except sa_exc.ProgrammingError as exc:
            if getattr(exc.orig, "sqlstate", None) not in MISSING_SCHEMA_CODES:
                raise
            # An operator dropped this tenant's schema under the running service: set it up
            # again on the next request rather than fail every request until a restart.
            log.warning("tenant schema missing; provisioning it again", extra={"tenant": tenant})
            self.forget(tenant)
            raise ServiceUnavailable(DATABASE_UNAVAILABLE) from exc

    async def ensure_tenant(self, tenant: str) -> None:
        if tenant in self._provisioned:
            return
        if not valid_schema_name(tenant):
            raise ValueError(f"invalid tenant schema name: {tenant!r}")
        lock = self._locks.setdefault(tenant, asyncio.Lock())
        async with lock:
            if tenant in self._provisioned:
                return
            # Alembic is synchronous; provisioning happens once per tenant and process.
            await asyncio.to_thread(self._provision, tenant)
            self._provisioned.add(tenant)

    async def check(self) -> None:
        """Health check: the default tenant's database is there and answers."""
        async with self.connect(self.default_tenant, write=False) as connection:
            await connection.execute(text("SELECT 1"))

    def forget(self, tenant: str) -> None:
        """Provision ``tenant`` again on its next use (after an operator dropped its data)."""
        self._provisioned.discard(tenant)

    async def dispose(self) -> None:
        self.schemas.dispose()

    # --- backend specifics ---

    def _provision(self, tenant: str) -> None:
        self.schemas.upgrade(tenant)

    def _check_still_there(self, tenant: str) -> None:
        """Forget a provisioned tenant whose data vanished under the service (SQLite)."""

    async def _begin(self, connection: AsyncConnection) -> None:
        """Start the transaction ``connect(transaction=True)`` asked for."""

    def _engine(self, tenant: str, *, write: bool) -> AsyncEngine:
        raise NotImplementedError


class PostgresTenants(TenantDatabases):
    def __init__(self, settings: ClinicSettings) -> None:
        super().__init__(settings, PostgresSchemas(settings))
        # Autocommit: every clinic request is made of single statements, each atomic on its
        # own (a write and its audit event are one statement), so no BEGIN/COMMIT round trips.
        self.engine = create_async_db_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            application_name="dentiapro-clinic",
            autocommit=True,
        )
        track_engine(self.engine)
        # Option engines share the one pool; cached, so each tenant costs one small object.
        self._bound: dict[str, AsyncEngine] = {}

    async def _begin(self, connection: AsyncConnection) -> None:
        # Leave autocommit for this connection (reset when it returns to the pool).
        await connection.execution_options(isolation_level="READ COMMITTED")
        await connection.begin()

    def _engine(self, tenant: str, *, write: bool) -> AsyncEngine:
        bound = self._bound.get(tenant)
        if bound is None:
            bound = self.engine.execution_options(schema_translate_map={None: tenant})
            self._bound[tenant] = bound
        return bound

    async def dispose(self) -> None:
        await super().dispose()
        await self.engine.dispose()


def _sqlite_connect(dbapi_connection: Any, _: Any) -> None:
    # We issue BEGIN ourselves (see _sqlite_begin); common.db registers the Unicode-aware
    # lower() that search relies on.
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Connection) -> None:
    options = connection.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return  # a read: each statement is its own transaction
    # BEGIN IMMEDIATE takes the write lock up front, so two read-modify-write requests queue
    # instead of interleaving (or failing with "database is locked" when both upgrade).
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class SqliteTenants(TenantDatabases):
    schemas: SqliteSchemas

    def __init__(self, settings: ClinicSettings) -> None:
        super().__init__(settings, SqliteSchemas(settings))
        # Per tenant file: (reads in autocommit, writes); the least recently used is closed.
        self._engines: OrderedDict[str, tuple[AsyncEngine, AsyncEngine]] = OrderedDict()
        self._disposals: set[asyncio.Task[None]] = set()

    def _check_still_there(self, tenant: str) -> None:
        if tenant in self._provisioned and not self.schemas.path_for(tenant).exists():
            # The file was removed (or its volume unmounted) under an open engine, whose
            # connections would keep writing to the unlinked file: start over from the disk.
            self._drop(tenant)
            self.forget(tenant)

    def _engine(self, tenant: str, *, write: bool) -> AsyncEngine:
        engines = self._engines.get(tenant)
        if engines is None:
            engines = self._engines[tenant] = self._create_engines(tenant)
            while len(self._engines) > self.settings.max_sqlite_engines:
                self._drop(next(iter(self._engines)))
        else:
            self._engines.move_to_end(tenant)
        return engines[1] if write else engines[0]

    def _create_engines(self, tenant: str) -> tuple[AsyncEngine, AsyncEngine]:
        engine = create_async_db_engine(
            f"sqlite:///{self.schemas.path_for(tenant)}",
            pool_size=5,
            max_overflow=self.settings.db_pool_size + self.settings.db_max_overflow,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        track_engine(engine)
        return engine.execution_options(**READ), engine

    def _drop(self, tenant: str) -> None:
        engines = self._engines.pop(tenant, None)
        if engines is not None:
            # Idle connections close now; one in use finishes its request first.
            task = asyncio.get_running_loop().create_task(engines[1].dispose())
            self._disposals.add(task)
            task.add_done_callback(self._disposals.discard)

    async def dispose(self) -> None:
        engines = [write for _, write in self._engines.values()]
        self._engines.clear()
        await asyncio.gather(*self._disposals, *(engine.dispose() for engine in engines))


def tenant_databases(settings: ClinicSettings) -> TenantDatabases:
    return SqliteTenants(settings) if settings.uses_sqlite else PostgresTenants(settings)


def schemas_for(settings: ClinicSettings) -> TenantSchemas:
    """The synchronous side, for tools (``dentiapro migrate``)."""
    return tenant_schemas(settings)
