"""The audit trail of clinical data: every view, list, create, update, delete and export.

    AuditTrail       one per process (app.state.audit): buffers read events, flushes them
    └── RequestAudit one per clinic request: what the request touched, and how it ended

Writes are recorded by the statement that makes the change (``clinic.crud``): on PostgreSQL the
change and its event are one statement (a data-modifying CTE), on SQLite one transaction, so a
change without its event cannot exist. Everything else - reads, and writes that were refused -
is recorded when the response's status is known, in memory, and written by a background task
about every second (``AUDIT_FLUSH_INTERVAL``), one batch per tenant, and at shutdown: a read
costs a dictionary, not a round trip. Events hold ids, never names, diagnoses, treatments or
search terms.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from common.background import in_background
from common.db import is_unavailable, utcnow
from prometheus_client import Counter, Gauge
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Insert,
    Integer,
    Select,
    Table,
    Update,
    bindparam,
    exists,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.dml import ReturningDelete
from sqlalchemy.sql.expression import ColumnClause

from clinic.models import MAX_ID, AuditEvent

log = logging.getLogger("dentiapro.clinic.audit")

AUDIT: Table = AuditEvent.__table__  # type: ignore[attr-defined]

AUDIT_EVENTS = Counter(
    "clinic_audit_events_total",
    "Audit events written, by how: with the change (same statement/transaction) or buffered.",
    ["how"],
)
WITH_CHANGE = AUDIT_EVENTS.labels("with_change")
BUFFERED = AUDIT_EVENTS.labels("buffered")
FLUSH_FAILURES = Counter("clinic_audit_flush_failures_total", "Audit flushes that failed.")
DROPPED = Counter(
    "clinic_audit_events_dropped_total",
    "Audit events dropped because the buffer was full (the database refused them for long).",
)
BUFFER_SIZE = Gauge("clinic_audit_buffered_events", "Audit events waiting to be written.")
FLUSH_LAG = Gauge(
    "clinic_audit_flush_lag_seconds",
    "Age of the oldest audit event not yet written (0 when none waits).",
)

# Past this, the trail is reported unhealthy: events are not reaching the database.
MAX_HEALTHY_LAG_SECONDS = 30.0
MAX_BUFFERED_EVENTS = 200_000


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a request, and from where (the address the gateway saw)."""

    user_id: int
    username: str
    request_id: str
    client_ip: str


def event_row(
    actor: Actor,
    action: str,
    resource: str,
    ids: list[int],
    status: int,
    at: datetime | None = None,
) -> dict[str, Any]:
    """An ``audit_event`` row: a list's event names every id it returned and no single one.
    An id no record can have (a request for /patients/99999999999/) is not kept."""
    ids = [value for value in ids if 0 < value <= MAX_ID]
    return {
        "at": at or utcnow(),
        "user_id": actor.user_id,
        "username": actor.username,
        "action": action,
        "resource": resource,
        "resource_id": ids[0] if len(ids) == 1 and action != "list" else None,
        "resource_ids": ids,
        "request_id": actor.request_id,
        "client_ip": actor.client_ip,
        "status": status,
    }


# --- "resource_ids contains this id", on both backends ---


class ContainsId(ColumnElement[bool]):
    """``audit_event.resource_ids`` holds the bound id: ``@>`` on PostgreSQL's integer array
    (the GIN index), ``json_each`` on SQLite's JSON array."""

    inherit_cache = True
    type = postgresql.BOOLEAN()

    def __init__(self, value: ColumnElement[int]) -> None:
        self.value = value


@compiles(ContainsId, "postgresql")
def _contains_postgresql(element: ContainsId, compiler: Any, **kw: Any) -> str:
    array = postgresql.array[Any]([element.value], type_=Integer)
    return str(compiler.process(AUDIT.c.resource_ids.op("@>")(array), **kw))


@compiles(ContainsId, "sqlite")
def _contains_sqlite(element: ContainsId, compiler: Any, **kw: Any) -> str:
    values = func.json_each(AUDIT.c.resource_ids).table_valued("value")
    return str(compiler.process(exists().where(values.c.value == element.value), **kw))


# --- events written with the change they record (clinic.crud) ---


@cache
def with_event(
    change: Insert | Update | ReturningDelete[Any], action: str, resource: str, status: int
) -> Select[Any]:
    """PostgreSQL: ``change`` (an INSERT/UPDATE/DELETE ... RETURNING the record's ``id``) and
    the insert of its audit event as ONE statement: both happen or neither. The actor's fields
    are bound at execution (``actor_params``)."""
    changed = change.cte("changed")
    record_id = changed.c.id
    columns = ["at", "user_id", "username", "action", "resource"]
    columns += ["resource_id", "resource_ids", "request_id", "client_ip", "status"]
    event = insert(AUDIT).from_select(
        columns,
        select(
            _bound("audit_at", AUDIT.c.at),
            _bound("audit_user_id", AUDIT.c.user_id),
            _bound("audit_username", AUDIT.c.username),
            literal(action, AUDIT.c.action.type),
            literal(resource, AUDIT.c.resource.type),
            record_id,
            postgresql.array[Any]([record_id], type_=Integer),
            _bound("audit_request_id", AUDIT.c.request_id),
            _bound("audit_client_ip", AUDIT.c.client_ip),
            literal(status, AUDIT.c.status.type),
        ).select_from(changed),
    )
    return select(changed).add_cte(event.cte("logged"))


def _bound(name: str, column: ColumnClause[Any]) -> BindParameter[Any]:
    return bindparam(name, type_=column.type)


def actor_params(actor: Actor) -> dict[str, Any]:
    """The execution parameters ``with_event`` statements bind."""
    return {
        "audit_at": utcnow(),
        "audit_user_id": actor.user_id,
        "audit_username": actor.username,
        "audit_request_id": actor.request_id,
        "audit_client_ip": actor.client_ip,
    }


# --- the request's audit, and the process's buffer ---


@dataclass(slots=True)
class RequestAudit:
    """What one clinic request touched. The route (or the dependency that loads the record)
    says it; ``finish`` records it with the response's status, unless the change's own
    statement already did (``recorded``)."""

    trail: "AuditTrail"
    tenant: str
    actor: Actor
    action: str = ""
    resource: str = ""
    ids: list[int] = field(default_factory=list)
    recorded: bool = False

    def touch(self, action: str, resource: str, ids: list[int]) -> None:
        self.action, self.resource, self.ids = action, resource, ids

    def written_with_change(self) -> None:
        self.recorded = True
        WITH_CHANGE.inc()

    def finish(self, status: int) -> None:
        if self.action and not self.recorded:
            self.trail.add(
                self.tenant, event_row(self.actor, self.action, self.resource, self.ids, status)
            )


class AuditTrail:
    """Buffers events per tenant and writes them in batches, off the request path."""

    def __init__(self, databases: Any, flush_interval: float) -> None:
        self._databases = databases
        self._interval = flush_interval
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._count = 0
        self._oldest: float | None = None
        self._wake = asyncio.Event()
        self.last_error: str | None = None
        FLUSH_LAG.set_function(self.lag)
        BUFFER_SIZE.set_function(lambda: self._count)

    def add(self, tenant: str, row: dict[str, Any]) -> None:
        if self._count >= MAX_BUFFERED_EVENTS:
            DROPPED.inc()
            log.error("audit buffer full: an event was dropped", extra={"tenant": tenant})
            return
        self._pending.setdefault(tenant, []).append(row)
        self._count += 1
        if self._oldest is None:
            self._oldest = time.monotonic()

    def lag(self) -> float:
        return 0.0 if self._oldest is None else time.monotonic() - self._oldest

    async def flush(self) -> None:
        """Write every buffered event, one batch (one transaction) per tenant. A batch that
        fails stays buffered and is retried at the next flush."""
        pending, self._pending = self._pending, {}
        started, self._oldest, self._count = self._oldest, None, 0
        failed: dict[str, list[dict[str, Any]]] = {}
        for tenant, rows in pending.items():
            try:
                await self._write(tenant, rows)
            except Exception as exc:
                FLUSH_FAILURES.inc()
                self.last_error = type(exc).__name__
                if is_unavailable(exc):  # the database is away: keep the batch for later
                    failed[tenant] = rows
                else:  # a row the database refuses would block the batch for ever
                    log.exception("audit flush failed; writing the events one by one")
                    await self._write_one_by_one(tenant, rows)
            else:
                BUFFERED.inc(len(rows))
        if failed:
            # Put the failed batches back, ahead of what arrived meanwhile (order by time).
            for tenant, rows in failed.items():
                self._pending[tenant] = rows + self._pending.get(tenant, [])
                self._count += len(rows)
            if started is not None:
                self._oldest = min(started, self._oldest or started)
        else:
            self.last_error = None

    async def _write(self, tenant: str, rows: list[dict[str, Any]]) -> None:
        # One transaction per batch: a retried batch is never half written.
        async with self._databases.connect(tenant, write=True, transaction=True) as db:
            await db.execute(insert(AUDIT), rows)

    async def _write_one_by_one(self, tenant: str, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            try:
                await self._write(tenant, [row])
            except Exception as exc:
                if is_unavailable(exc):
                    self.add(tenant, row)
                else:
                    DROPPED.inc()
                    log.error("audit event refused by the database: %s", type(exc).__name__)
            else:
                BUFFERED.inc()

    def check(self) -> None:
        """Health: the trail reaches the database (no failing flush, no growing backlog)."""
        if self.last_error is not None and self._count:
            raise RuntimeError(f"audit flush failing ({self.last_error})")
        if self.lag() > MAX_HEALTHY_LAG_SECONDS:
            raise RuntimeError("audit events waiting too long")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Lifespan helper: flush every ``flush_interval`` while the app runs, and once more
        when it stops (a clean shutdown loses no event)."""
        try:
            async with in_background(self._flush_periodically()):
                yield
        finally:
            await self.flush()
            if self._count:
                log.error("audit events not written at shutdown: %d", self._count)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if self._count:
                await self.flush()
