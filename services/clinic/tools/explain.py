"""Seed one tenant at scale and print the query plans of the statements the clinic runs.

Not part of CI (``tests/test_explain_tool.py`` runs it on a small seed so that it keeps
working). Usage, on a scratch PostgreSQL database that is dropped afterwards:

    createdb -h 127.0.0.1 -U postgres clinic_explain
    uv run --frozen python services/clinic/tools/explain.py \\
        postgresql+psycopg2://postgres@127.0.0.1:5432/clinic_explain > plans.md
    dropdb -h 127.0.0.1 -U postgres clinic_explain

1. Tenant ``bench`` is provisioned by ``clinic.schemas`` (the migrations the service runs) and
   seeded: 100,000 patients, 300,000 consultations, 20 cabinets and a year of audit trail
   (2,000,000 events); then ``VACUUM ANALYZE``, the steady state autovacuum keeps.
2. Each case runs the real ``clinic.crud`` call (list filters parsed by the routes' own
   dependencies) on the service's own engine: asyncpg, reads in autocommit, the tenant's
   ``schema_translate_map``. Every statement it sends is captured with its bind parameters and
   explained with them (``EXPLAIN (ANALYZE, BUFFERS)``) on the same connection. Writes run in a
   transaction that is rolled back.
3. Each statement is then executed ``--runs`` times as the service executes it (one prepared
   statement, bound values) and timed. After five executions PostgreSQL may switch a prepared
   statement to its generic plan (planned without the values); when it does, that plan is
   explained too, since it is the one a long-lived pooled connection keeps running.
"""

import argparse
import asyncio
import contextlib
import io
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from clinic import crud
from clinic.api.audit_events import audit_filters
from clinic.api.deps import consultation_filters
from clinic.audit import Actor, AuditTrail, RequestAudit
from clinic.db import PostgresTenants
from clinic.models import Patient, PatientCreate
from clinic.schemas import PostgresSchemas, quote_identifier
from clinic.settings import ClinicSettings
from common.db import create_db_engine, without_statement_timeout
from common.errors import Conflict
from common.listing import ListFilters, ListQuery
from common.pagination import PageRequest
from sqlalchemy import Engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

TENANT = "bench"
CABINETS = 20
CONSULTATIONS_PER_PATIENT = 3
# The audit trail covers one year, in order, on working days' hours (08:00 to 19:00 UTC).
TRAIL_START = datetime(2025, 12, 1, tzinfo=UTC)
TRAIL_DAYS = 365
# A practice's staff: user 1 is the admin (reads the trail, rarely the records), users 2-5 the
# front desk (most of the lists), 6-12 dentists and assistants.
USER_WEIGHTS = {1: 1, 2: 14, 3: 14, 4: 12, 5: 10, 6: 9, 7: 9, 8: 8, 9: 8, 10: 6, 11: 5, 12: 4}
# What the staff do, by share of events: mostly opening records and lists.
EVENT_KINDS: list[tuple[int, str, str]] = [
    (31, "view", "patient"),
    (12, "view", "consultation"),
    (2, "view", "cabinet"),
    (25, "list", "patient"),
    (15, "list", "consultation"),
    (2, "list", "cabinet"),
    (3, "update", "patient"),
    (3, "update", "consultation"),
    (1, "create", "patient"),
    (4, "create", "consultation"),
    (1, "export", "patient"),
    (1, "delete", "consultation"),
]
SEEDED_STATUS = {"view": 200, "list": 200, "update": 200, "create": 201, "export": 200}

FIRST = ["Ada", "Grace", "Alan", "Marie", "Emmy", "Hedy", "Rosalind", "Barbara", "Katherine"]
FIRST += ["Dorothy", "Linus", "Guido", "Ken", "Dennis", "Edsger", "Donald", "John", "Claude"]
FIRST += ["Tim", "Vint"]
LAST = ["Lovelace", "Hopper", "Turing", "Curie", "Noether", "Lamarr", "Franklin", "Liskov"]
LAST += ["Johnson", "Vaughan", "Torvalds", "Rossum", "Thompson", "Ritchie", "Dijkstra", "Knuth"]
LAST += ["McCarthy", "Shannon", "Berners-Lee", "Cerf", "Durand", "Martin", "Bernard", "Dubois"]
LAST += ["Thomas", "Robert", "Richard", "Petit", "Moreau", "Laurent"]


# --- seeding ---


@dataclass(frozen=True)
class Scale:
    patients: int
    events: int

    @property
    def consultations(self) -> int:
        return self.patients * CONSULTATIONS_PER_PATIENT

    @property
    def typical_patient(self) -> int:
        """A patient far from the first page of any list (54321 of 100,000)."""
        return max(1, self.patients * 54321 // 100_000)


def _listed(rng: random.Random, total: int) -> list[int]:
    """The ids one list page returned: half are pages in the default order (by id; the first
    page most of all, as every list opens on it), half searches, filters or other orderings."""
    size = rng.choice((50, 50, 50, 20, 25))  # ?page_size=, mostly the default
    if rng.random() < 0.5:
        pages = max(1, total // size)
        page = 1 if rng.random() < 0.4 else rng.randint(1, pages)
        first = (page - 1) * size + 1
        return list(range(first, min(first + size, total + 1)))
    return sorted(rng.sample(range(1, total + 1), min(size, total)))


def _event_ids(rng: random.Random, action: str, resource: str, scale: Scale) -> list[int]:
    total = {"patient": scale.patients, "consultation": scale.consultations}.get(resource, CABINETS)
    if action != "list":
        return [rng.randint(1, total)]
    if resource == "cabinet":
        return list(range(1, CABINETS + 1))
    if resource == "consultation" and rng.random() < 0.4:  # ?patient=: its three consultations
        patient = rng.randint(1, scale.patients)
        return list(range(patient * 3 - 2, patient * 3 + 1))
    return _listed(rng, total)


def audit_lines(scale: Scale) -> Iterator[str]:
    """The trail as COPY text lines: ``scale.events`` events over a year, oldest first."""
    rng = random.Random(42)  # noqa: S311 -- made-up data, reproducible
    users, user_weights = list(USER_WEIGHTS), list(USER_WEIGHTS.values())
    kinds = [(action, resource) for _, action, resource in EVENT_KINDS]
    kind_weights = [weight for weight, _, _ in EVENT_KINDS]
    for n in range(scale.events):
        day, share = divmod(n * TRAIL_DAYS / scale.events, 1)
        at = TRAIL_START + timedelta(days=day, hours=8 + 11 * share)
        user = rng.choices(users, user_weights)[0]
        action, resource = rng.choices(kinds, kind_weights)[0]
        ids = _event_ids(rng, action, resource, scale)
        status = SEEDED_STATUS.get(action, 204)
        if action == "view" and rng.random() < 0.02:
            status = 404
        resource_id = str(ids[0]) if action != "list" else "\\N"
        id_array = "{" + ",".join(map(str, ids)) + "}"
        request_id = f"{rng.getrandbits(128):032x}"
        yield (
            f"{at.isoformat()}\t{user}\tuser{user}\t{action}\t{resource}\t{resource_id}\t"
            f"{id_array}\t{request_id}\t10.1.0.{user}\t{status}\n"
        )


def seed_records(engine: Engine, scale: Scale) -> None:
    first = "(ARRAY[" + ",".join(f"'{n}'" for n in FIRST) + "])"
    last = "(ARRAY[" + ",".join(f"'{n}'" for n in LAST) + "])"
    schema = quote_identifier(TENANT)
    with engine.begin() as connection:
        without_statement_timeout(connection)
        connection.execute(
            text(
                f"INSERT INTO {schema}.cabinet (name, address, contact_number, created_at, "
                "updated_at) SELECT 'Cabinet ' || i, i || ' Rue de la Paix', "
                "'+33 1 00 00 00 ' || lpad(i::text, 2, '0'), now(), now() "
                "FROM generate_series(1, :n) i"
            ),
            {"n": CABINETS},
        )
        connection.execute(
            text(
                f"INSERT INTO {schema}.patient (name, birthdate, contact_number, email, "
                "created_at, updated_at) "
                f"SELECT {first}[1 + (i * 7) % {len(FIRST)}] || ' ' "
                f"|| {last}[1 + (i * 13) % {len(LAST)}], "
                "date '1930-01-01' + (i * 37) % 30000, "
                "'+33 6 ' || lpad((i * 7919 % 100000000)::text, 8, '0'), "
                "CASE WHEN i % 5 = 0 THEN NULL ELSE 'patient' || i || '@example.com' END, "
                "now() - (:n - i) * interval '1 minute', now() - (:n - i) * interval '1 minute' "
                "FROM generate_series(1, :n) i"
            ),
            {"n": scale.patients},
        )
        # Consultation ids follow the patients: patient p has consultations 3p-2, 3p-1, 3p.
        connection.execute(
            text(
                f"INSERT INTO {schema}.consultation (patient_id, cabinet_id, date, diagnosis, "
                "treatment, created_at, updated_at) "
                "SELECT p, 1 + (p * k) % :cabinets, "
                "timestamptz '2020-01-01' + ((p * 31 + k * 997) % 2000) * interval '1 day' "
                "+ (k * 3) * interval '1 hour', "
                "(ARRAY['Caries','Gingivitis','Periodontitis','Pulpitis','Abscess','Checkup'])"
                "[1 + (p + k) % 6] || ' tooth ' || (11 + (p * k) % 38), "
                "(ARRAY['Filling','Scaling','Root canal','Extraction',''])[1 + (p * k) % 5], "
                "now(), now() "
                "FROM generate_series(1, :n) p, generate_series(1, :k) k ORDER BY p, k"
            ),
            {"n": scale.patients, "k": CONSULTATIONS_PER_PATIENT, "cabinets": CABINETS},
        )


def seed_trail(engine: Engine, scale: Scale) -> None:
    columns = "at, user_id, username, action, resource, resource_id, resource_ids, "
    columns += "request_id, client_ip, status"
    copy = f"COPY {quote_identifier(TENANT)}.audit_event ({columns}) FROM STDIN"
    lines = audit_lines(scale)
    written = 0
    while written < scale.events:
        # In batches, each its own transaction, as the trail grows in service.
        size = min(200_000, scale.events - written)
        batch = io.StringIO("".join(next(lines) for _ in range(size)))
        connection = engine.raw_connection()
        try:
            psycopg = connection.driver_connection
            assert psycopg is not None
            with psycopg.cursor() as cursor:
                cursor.execute("SET statement_timeout = 0")
                cursor.copy_expert(copy, batch)
            psycopg.commit()
        finally:
            connection.close()
        written += size
        progress(f"audit events: {written:,} of {scale.events:,}")


def seeded(engine: Engine, scale: Scale) -> bool:
    schema = quote_identifier(TENANT)
    with engine.connect() as connection:
        exists = connection.execute(
            text("SELECT to_regclass(:table) IS NOT NULL"), {"table": f"{schema}.audit_event"}
        ).scalar_one()
        if not exists:
            return False
        patients = connection.exec_driver_sql(f"SELECT count(*) FROM {schema}.patient")
        events = connection.exec_driver_sql(f"SELECT count(*) FROM {schema}.audit_event")
        return (patients.scalar_one(), events.scalar_one()) == (scale.patients, scale.events)


def seed(url: str, scale: Scale) -> None:
    engine = create_db_engine(url, pool_size=1, max_overflow=0)
    try:
        if seeded(engine, scale):
            progress("tenant already seeded")
        else:
            # The trail is append-only (no TRUNCATE): start a partial seed over from scratch.
            with engine.begin() as connection:
                connection.exec_driver_sql(
                    f"DROP SCHEMA IF EXISTS {quote_identifier(TENANT)} CASCADE"
                )
            schemas = PostgresSchemas(ClinicSettings(database_url=url))
            schemas.upgrade(TENANT)
            schemas.dispose()
            started = time.perf_counter()
            seed_records(engine, scale)
            progress(f"records seeded in {time.perf_counter() - started:.0f} s")
            started = time.perf_counter()
            seed_trail(engine, scale)
            progress(f"audit trail seeded in {time.perf_counter() - started:.0f} s")
        with engine.connect() as connection:
            autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
            autocommit.exec_driver_sql("SET statement_timeout = 0")
            for table in ("cabinet", "patient", "consultation", "audit_event"):
                autocommit.exec_driver_sql(f"VACUUM ANALYZE {quote_identifier(TENANT)}.{table}")
    finally:
        engine.dispose()


def progress(message: str) -> None:
    print(f"[explain] {message}", file=sys.stderr, flush=True)


# --- capturing and explaining ---


@dataclass
class Captured:
    statement: str
    parameters: tuple[Any, ...]


@dataclass
class Case:
    title: str
    run: Callable[[AsyncConnection], Awaitable[Any]]
    # Writes run in a transaction that is rolled back.
    write: bool = False
    captured: list[Captured] = field(default_factory=list)


def sql_literal(value: Any) -> str:
    """A bind value as an SQL literal, for ``EXECUTE name(...)`` (which takes no parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime | date):
        value = value.isoformat()
    return "'" + str(value).replace("'", "''") + "'"


def shown(parameters: Sequence[Any]) -> str:
    return ", ".join(f"${n} = {sql_literal(v)}" for n, v in enumerate(parameters, 1))


def plan_shape(plan: str) -> list[str]:
    """A plan's nodes and the indexes they use, without timings, conditions or values."""
    nodes = [line.strip().removeprefix("->").strip() for line in plan.splitlines()]
    return [node.split(" (actual")[0] for node in nodes if " (actual" in node]


async def plan_of(db: AsyncConnection, statement: str, parameters: Sequence[Any]) -> str:
    rows = await db.exec_driver_sql(statement, tuple(parameters))
    return "\n".join(str(row[0]) for row in rows)


async def explain_statement(
    db: AsyncConnection, captured: Captured, runs: int, *, write: bool
) -> str:
    statement, parameters = captured.statement, captured.parameters
    out = [f"```sql\n{statement}\n```"]
    if parameters:
        out.append(f"Parameters: {shown(parameters)}\n")
    try:
        # A savepoint in a write's transaction: a refused statement must not abort it.
        async with db.begin_nested() if write else contextlib.nullcontext():
            plan = await plan_of(
                db, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters
            )
    except sa_exc.IntegrityError as exc:
        # The refused DELETE of a referenced record: the foreign key stops it (a 409).
        reason = str(exc.orig).splitlines()[0]
        plan = await plan_of(db, "EXPLAIN (COSTS OFF) " + statement, parameters)
        out.append(f"Refused as expected ({reason}); its plan, not executed:\n")
        out.append(f"```\n{plan}\n```\n")
        return "\n".join(out)
    out.append(f"```\n{plan}\n```")
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        await db.exec_driver_sql(statement, tuple(parameters))
        timings.append((time.perf_counter() - started) * 1000)
    prepared = (
        await db.exec_driver_sql(
            "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement = $1",
            (statement,),
        )
    ).first()
    median = statistics.median(timings)
    summary = f"Executed {runs} more times as the service does: median {median:.2f} ms"
    if prepared is None or not prepared.generic_plans or not parameters:
        out.append(f"{summary}.\n")
        return "\n".join(out)
    # The first five executions of a prepared statement get custom plans (planned with the
    # values); then PostgreSQL keeps its generic plan if that one does not look dearer.
    arguments = ", ".join(sql_literal(value) for value in parameters)
    execute = f'EXECUTE "{prepared.name}"({arguments})'
    generic = await plan_of(db, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + execute, ())
    summary += (
        f"; after {prepared.custom_plans} custom plans PostgreSQL switched to its generic plan"
    )
    if plan_shape(generic) == plan_shape(plan):
        out.append(f"{summary}, of the same shape.\n")
    else:
        out.append(f"{summary}, **of another shape**:\n\n```\n{generic}\n```\n")
    return "\n".join(out)


async def run_case(databases: PostgresTenants, case: Case, runs: int) -> str:
    def listen(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        case.captured.append(Captured(statement, tuple(parameters or ())))

    out = [f"#### {case.title}\n"]
    if case.write:
        bound = databases.engine.execution_options(schema_translate_map={None: TENANT})
        connection = bound.connect()
    else:
        connection = databases.connect(TENANT, write=False)
    async with connection as db:
        if case.write:
            await db.execution_options(isolation_level="READ COMMITTED")
            await db.begin()
        event.listen(db.sync_connection, "before_cursor_execute", listen)
        try:
            await case.run(db)
        finally:
            event.remove(db.sync_connection, "before_cursor_execute", listen)
        for captured in case.captured:
            out.append(await explain_statement(db, captured, runs, write=case.write))
        if case.write:
            await db.rollback()
        # A fresh connection for the next case: prepared statements (and the generic plans
        # PostgreSQL may have chosen for them) are per connection.
        await db.invalidate()
    return "\n".join(out)


# --- the cases: what the API runs ---


def list_query(page: str = "1", size: int = 50, **filters: Any) -> ListQuery:
    return ListQuery(PageRequest(page=page, size=size), ListFilters(**filters))


def cases(databases: PostgresTenants, scale: Scale, recent: datetime) -> list[Case]:
    typical = scale.typical_patient
    deep = min(100, max(1, scale.patients // 50))  # page 100 (of 2,000)
    trail = AuditTrail(databases, flush_interval=1.0)
    actor = Actor(user_id=2, username="user2", request_id="explain", client_ip="10.1.0.2")

    def audit() -> RequestAudit:
        return RequestAudit(trail, TENANT, actor)

    def patients(**filters: Any) -> Callable[[AsyncConnection], Awaitable[Any]]:
        page = filters.pop("page", "1")
        return lambda db: crud.list_patients(db=db, query=list_query(page, **filters))

    def consultations(
        ordering: str = "", search: str = "", **raw: str
    ) -> Callable[[AsyncConnection], Awaitable[Any]]:
        async def run(db: AsyncConnection) -> Any:
            parsed = await consultation_filters(**raw)  # as the route parses the query
            query = list_query(ordering=ordering, search=search)
            return await crud.list_consultations(db=db, query=query, filters=parsed)

        return run

    def trail_page(page: str = "1", **raw: str) -> Callable[[AsyncConnection], Awaitable[Any]]:
        async def run(db: AsyncConnection) -> Any:
            filters = await audit_filters(**raw)  # as the route parses the query
            return await crud.list_audit_events(db=db, query=list_query(page), filters=filters)

        return run

    async def create_patient(db: AsyncConnection) -> None:
        patient_in = PatientCreate.model_validate(
            {
                "name": "Ada Lovelace",
                "birthdate": "1990-12-10",
                "contact_number": "+33 6 12 34 56 78",
            }
        )
        await crud.create_patient(db=db, patient_in=patient_in, audit=audit())

    async def patch_patient(db: AsyncConnection) -> None:
        await crud.get(db, Patient, typical)  # the route loads the record first (PatientDep)
        changes = {"contact_number": "+33 6 99 88 77 66"}
        await crud.update_patient(db=db, patient_id=typical, changes=changes, audit=audit())

    async def delete_referenced_patient(db: AsyncConnection) -> None:
        with contextlib.suppress(Conflict):
            await crud.delete_patient(db=db, patient_id=typical, audit=audit())

    async def export(db: AsyncConnection) -> None:
        await crud.patient_record(db, typical)

    month = {"user_id": "3", "after": "2026-06-01", "before": "2026-06-30"}
    return [
        Case("List patients, first page (default ordering by id)", patients()),
        Case(
            f"List patients ordered by name, page {deep}",
            patients(ordering="name", page=str(deep)),
        ),
        Case("List patients ordered by email, first page", patients(ordering="email")),
        Case(
            "List consultations ordered by diagnosis, first page (no index: free text)",
            consultations(ordering="diagnosis"),
        ),
        Case("Search patients: a surname (`lovelace`, 1/30 of rows)", patients(search="lovelace")),
        Case("Search patients: one email (`patient12345@`)", patients(search="patient12345@")),
        Case("Search patients: two terms (`grace hopper`)", patients(search="grace hopper")),
        Case("Search patients: a phone fragment (`6 0012`)", patients(search="6 0012")),
        Case(
            "Patients updated in the last 30 minutes (`updated_after`)",
            patients(updated_after=recent),
        ),
        Case(f"Get one patient by id ({typical})", lambda db: crud.get(db, Patient, typical)),
        Case(
            f"Consultations of one patient (`patient={typical}`)",
            consultations(patient=str(typical)),
        ),
        Case(
            "Consultations of one cabinet in one month, newest first",
            consultations(
                ordering="-date", cabinet="7", date_after="2022-03-01", date_before="2022-03-31"
            ),
        ),
        Case(
            "Consultations on one day (all cabinets)",
            consultations(date_after="2022-03-01", date_before="2022-03-01"),
        ),
        Case("Search consultations (`pulpitis`)", consultations(search="pulpitis")),
        Case(f"Export: the whole record of patient {typical}", export),
        Case("Create a patient, audited (`POST /api/patients/`)", create_patient, write=True),
        Case(
            f"Change a patient, audited (`PATCH /api/patients/{typical}/`)",
            patch_patient,
            write=True,
        ),
        Case(
            "Delete a patient that consultations reference (`DELETE`, a 409)",
            delete_referenced_patient,
            write=True,
        ),
        Case(
            "Audit: who saw patient 42 (`?resource=patient&resource_id=42`)",
            trail_page(resource="patient", resource_id="42"),
        ),
        Case(
            f"Audit: who saw patient {typical} (`?resource=patient&resource_id={typical}`)",
            trail_page(resource="patient", resource_id=str(typical)),
        ),
        Case(
            "Audit: who opened patient 42's record (`&action=view`)",
            trail_page(resource="patient", resource_id="42", action="view"),
        ),
        Case(
            "Audit: one user's events in one month (`?user_id=3&after=2026-06-01&before=2026-06-30`)",
            trail_page(**month),
        ),
        Case("Audit: the newest page of the whole trail (no filter)", trail_page()),
        Case("Audit: the last page of the whole trail (`?page=last`)", trail_page(page="last")),
    ]


async def explain_all(url: str, scale: Scale, runs: int) -> None:
    databases = PostgresTenants(ClinicSettings(database_url=url))
    try:
        async with databases.connect(TENANT, write=False) as db:
            recent = (
                await db.exec_driver_sql(
                    f"SELECT max(updated_at) - interval '30 minutes' FROM {quote_identifier(TENANT)}.patient"
                )
            ).scalar_one()
            print(await describe(db))
        for case in cases(databases, scale, recent):
            progress(case.title)
            print(await run_case(databases, case, runs))
    finally:
        await databases.dispose()


async def describe(db: AsyncConnection) -> str:
    """The server, its settings and the data, as the plans below saw them."""
    version = (await db.exec_driver_sql("SHOW server_version")).scalar_one()
    settings = []
    for name in (
        "shared_buffers",
        "work_mem",
        "effective_cache_size",
        "jit",
        "max_parallel_workers_per_gather",
    ):
        settings.append(f"{name}={(await db.exec_driver_sql(f'SHOW {name}')).scalar_one()}")
    rows: Sequence[Any] = (
        await db.exec_driver_sql(
            "SELECT c.relname, c.reltuples::bigint, pg_relation_size(c.oid), "
            "pg_indexes_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> 'alembic_version' "
            "ORDER BY c.relname",
            (TENANT,),
        )
    ).all()
    tables = "\n".join(
        f"| {name} | {tuples:,} | {heap / 2**20:.1f} MB | {indexes / 2**20:.1f} MB |"
        for name, tuples, heap, indexes in rows
    )
    indexes: Sequence[Any] = (
        await db.exec_driver_sql(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
            "WHERE indrelid = to_regclass($1) ORDER BY 1",
            (f"{TENANT}.audit_event",),
        )
    ).all()
    audit_indexes = ", ".join(
        f"`{name.split('.')[-1]}` {size / 2**20:.1f} MB" for name, size in indexes
    )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"PostgreSQL {version} ({', '.join(settings)}); load average at the start: {load}.\n\n"
        f"| table | rows | heap | indexes |\n| --- | ---: | ---: | ---: |\n{tables}\n\n"
        f"audit_event's indexes: {audit_indexes}.\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="a scratch database: postgresql+psycopg2://...")
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2_000_000, help="audit events")
    parser.add_argument("--runs", type=int, default=10, help="timed executions per statement")
    args = parser.parse_args(argv)
    scale = Scale(patients=args.patients, events=args.events)
    seed(args.url, scale)
    asyncio.run(explain_all(args.url, scale, args.runs))


if __name__ == "__main__":
    main()
