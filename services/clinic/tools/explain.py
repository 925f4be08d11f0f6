"""Seed one tenant with 100,000 patients and print EXPLAIN ANALYZE of the queries the API runs.

Not part of CI. Usage (a scratch PostgreSQL database that may be dropped afterwards):

    createdb -h 127.0.0.1 -U postgres clinic_explain
    uv run python services/clinic/tools/explain.py \\
        postgresql+psycopg2://postgres@127.0.0.1:5432/clinic_explain

The statements are captured from the real ``clinic.crud`` functions (after the tenant's
``schema_translate_map`` is applied), then explained with the same parameters.
"""

import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from clinic import crud
from clinic.crud import ConsultationFilters, ListFilters
from clinic.db import PostgresTenants
from clinic.models import Consultation
from clinic.pagination import PageRequest
from clinic.settings import ClinicSettings
from sqlalchemy import event, func, select, text
from sqlmodel import Session

TENANT = "bench"
PATIENTS = 100_000
CABINETS = 20
CONSULTATIONS_PER_PATIENT = 3

FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Marie",
    "Emmy",
    "Hedy",
    "Rosalind",
    "Barbara",
    "Katherine",
    "Dorothy",
    "Linus",
    "Guido",
    "Ken",
    "Dennis",
    "Edsger",
    "Donald",
    "John",
    "Claude",
    "Tim",
    "Vint",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Curie",
    "Noether",
    "Lamarr",
    "Franklin",
    "Liskov",
    "Johnson",
    "Vaughan",
    "Torvalds",
    "Rossum",
    "Thompson",
    "Ritchie",
    "Dijkstra",
    "Knuth",
    "McCarthy",
    "Shannon",
    "Berners-Lee",
    "Cerf",
    "Durand",
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Moreau",
    "Laurent",
]


def seed(session: Session) -> None:
    if session.execute(text(f"SELECT count(*) FROM {TENANT}.patient")).scalar_one() >= PATIENTS:
        return
    # Seeding 400,000 rows into indexed tables outlasts the service's 30 s statement timeout.
    session.execute(text("SET LOCAL statement_timeout = 0"))
    # Ids 1..N, whatever an interrupted earlier run left behind.
    session.execute(
        text(f"TRUNCATE {TENANT}.consultation, {TENANT}.patient, {TENANT}.cabinet RESTART IDENTITY")
    )
    first = "(ARRAY[" + ",".join(f"'{n}'" for n in FIRST) + "])"
    last = "(ARRAY[" + ",".join(f"'{n}'" for n in LAST) + "])"
    session.execute(
        text(
            f"INSERT INTO {TENANT}.cabinet (name, address, contact_number, created_at, updated_at) "
            "SELECT 'Cabinet ' || i, i || ' Rue de la Paix', '+33 1 00 00 00 ' || lpad(i::text, 2, '0'), "
            "now(), now() FROM generate_series(1, :n) i"
        ),
        {"n": CABINETS},
    )
    session.execute(
        text(
            f"INSERT INTO {TENANT}.patient (name, birthdate, contact_number, email, created_at, updated_at) "
            f"SELECT {first}[1 + (i * 7) % {len(FIRST)}] || ' ' || {last}[1 + (i * 13) % {len(LAST)}], "
            "date '1930-01-01' + (i * 37) % 30000, "
            "'+33 6 ' || lpad((i * 7919 % 100000000)::text, 8, '0'), "
            "CASE WHEN i % 5 = 0 THEN NULL ELSE 'patient' || i || '@example.com' END, "
            "now() - (:n - i) * interval '1 minute', now() - (:n - i) * interval '1 minute' "
            "FROM generate_series(1, :n) i"
        ),
        {"n": PATIENTS},
    )
    session.execute(
        text(
            f"INSERT INTO {TENANT}.consultation (patient_id, cabinet_id, date, diagnosis, treatment, "
            "created_at, updated_at) "
            "SELECT p, 1 + (p * k) % :cabinets, "
            "timestamptz '2020-01-01' + ((p * 31 + k * 997) % 2000) * interval '1 day' "
            "+ (k * 3) * interval '1 hour', "
            "(ARRAY['Caries','Gingivitis','Periodontitis','Pulpitis','Abscess','Checkup'])[1 + (p + k) % 6] "
            "|| ' tooth ' || (11 + (p * k) % 38), "
            "(ARRAY['Filling','Scaling','Root canal','Extraction',''])[1 + (p * k) % 5], now(), now() "
            "FROM generate_series(1, :n) p, generate_series(1, :k) k"
        ),
        {"n": PATIENTS, "k": CONSULTATIONS_PER_PATIENT, "cabinets": CABINETS},
    )
    session.commit()


def capture(session: Session, call: Callable[[], Any]) -> list[tuple[str, Any]]:
    statements: list[tuple[str, Any]] = []

    def listen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    connection = session.connection()
    event.listen(connection, "before_cursor_execute", listen)
    try:
        call()
    finally:
        event.remove(connection, "before_cursor_execute", listen)
    return statements


def explain(session: Session, title: str, call: Callable[[], Any]) -> None:
    print(f"\n### {title}\n")
    for statement, parameters in capture(session, call):
        cursor = session.connection().connection.cursor()
        started = time.perf_counter()
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        elapsed = (time.perf_counter() - started) * 1000
        sql = cursor.mogrify(statement, parameters).decode()
        print(
            f"```sql\n{sql}\n```\n```\n{plan}\n```\n(round trip with EXPLAIN: {elapsed:.1f} ms)\n"
        )
        cursor.close()


def main(url: str) -> None:
    databases = PostgresTenants(ClinicSettings(database_url=url))
    with databases.session(TENANT, write=True) as session:
        seed(session)
    # The steady state autovacuum keeps: statistics and a set visibility map.
    with databases.engine.connect() as connection:
        autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("cabinet", "patient", "consultation"):
            autocommit.exec_driver_sql(f"VACUUM ANALYZE {TENANT}.{table}")
    page = PageRequest(page="1", size=50)
    deep = PageRequest(page="100", size=50)
    recent = datetime.now(UTC) - timedelta(minutes=30)
    cases: list[tuple[str, Callable[[Session], Any]]] = [
        (
            "List patients, first page (default ordering by id)",
            lambda s: crud.list_patients(session=s, filters=ListFilters(), page=page),
        ),
        (
            "List patients ordered by name, page 100",
            lambda s: crud.list_patients(
                session=s, filters=ListFilters(ordering="name"), page=deep
            ),
        ),
        (
            "List patients ordered by email, first page",
            lambda s: crud.list_patients(
                session=s, filters=ListFilters(ordering="email"), page=page
            ),
        ),
        (
            "List consultations ordered by diagnosis, first page (no index: free text)",
            lambda s: crud.list_consultations(
                session=s, filters=ConsultationFilters(ordering="diagnosis"), page=page
            ),
        ),
        (
            "Search patients: a rare surname (`lovelace`, ~1/30 of rows)",
            lambda s: crud.list_patients(
                session=s, filters=ListFilters(search="lovelace"), page=page
            ),
        ),
        (
            "Search patients: one email (`patient12345@`)",
            lambda s: crud.list_patients(
                session=s, filters=ListFilters(search="patient12345@"), page=page
            ),
        ),
        (
            "Search patients: two terms (`grace hopper`)",
            lambda s: crud.list_patients(
                session=s, filters=ListFilters(search="grace hopper"), page=page
            ),
        ),
        (
            "Search patients: a phone fragment (`6 0012`)",
            lambda s: crud.list_patients(
                session=s, filters=ListFilters(search="6 0012"), page=page
            ),
        ),
        (
            "Patients updated in the last 30 minutes (`updated_after`)",
            lambda s: crud.list_patients(
                session=s, filters=ListFilters(updated_after=recent), page=page
            ),
        ),
        ("Get one patient by id", lambda s: crud.get_patient(session=s, patient_id=54321)),
        (
            "Consultations of one patient",
            lambda s: crud.list_consultations(
                session=s, filters=ConsultationFilters(patient=54321), page=page
            ),
        ),
        (
            "Consultations of one cabinet in one month, newest first",
            lambda s: crud.list_consultations(
                session=s,
                filters=ConsultationFilters(
                    cabinet=7,
                    date_after=date(2022, 3, 1),
                    date_before=date(2022, 3, 31),
                    ordering="-date",
                ),
                page=page,
            ),
        ),
        (
            "Consultations on one day (all cabinets)",
            lambda s: crud.list_consultations(
                session=s,
                filters=ConsultationFilters(
                    date_after=date(2022, 3, 1), date_before=date(2022, 3, 1)
                ),
                page=page,
            ),
        ),
        (
            "Search consultations (`pulpitis`)",
            lambda s: crud.list_consultations(
                session=s, filters=ConsultationFilters(search="pulpitis"), page=page
            ),
        ),
        (
            "Delete check: how many consultations reference a patient",
            lambda s: s.execute(
                select(func.count()).select_from(Consultation).where(Consultation.patient == 54321)  # type: ignore[arg-type]
            ).scalar_one(),
        ),
    ]
    with databases.session(TENANT, write=False) as session:
        for title, call in cases:
            explain(session, title, lambda call=call: call(session))  # type: ignore[misc]
    databases.dispose()


if __name__ == "__main__":
    main(sys.argv[1])
