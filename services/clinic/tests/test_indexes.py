"""The schema the migrations build is the one the models describe, and searches can use
the trigram indexes (their expression must match the query's exactly)."""

from collections.abc import Callable
from typing import Any

import clinic.models
import httpx
import pytest
from clinic.crud import AUDIT_LISTING, LISTINGS, SEARCH_TEXT, audit_filter_values
from clinic.models import Cabinet, Consultation, Patient
from common.testing import migration_drift
from sqlalchemy import create_engine, text
from sqlalchemy.dialects import postgresql
from sqlmodel import SQLModel

Json = dict[str, Any]


def _engine_for(backend: str, url: str, tenant: str, sqlite_file: Callable[[str, str], Any]) -> Any:
    if backend == "sqlite":
        return create_engine(f"sqlite:///{sqlite_file(url, tenant)}")
    return create_engine(url).execution_options(schema_translate_map={None: tenant})


def test_migrated_schema_matches_the_models(
    shared_backend: str,
    shared_database_url: str,
    fresh_api: httpx.Client,
    sqlite_tenant_file: Callable[[str, str], Any],
    tenant_of: Callable[[httpx.Client], str],
) -> None:
    assert fresh_api.get("/api/patients/").status_code == 200  # provisions the tenant
    tenant = tenant_of(fresh_api)
    engine = _engine_for(shared_backend, shared_database_url, tenant, sqlite_tenant_file)
    with engine.connect() as connection:
        if shared_backend == "postgresql":
            connection.exec_driver_sql(f'SET LOCAL search_path TO "{tenant}"')
        drift = migration_drift(
            connection,
            clinic.models,
            include_schemas=False,
            version_table_schema=None if shared_backend == "sqlite" else tenant,
        )
        differences = [
            diff
            for diff in drift
            # Alembic's own table, the generated search_text columns and their trigram
            # indexes (PostgreSQL only) are not in the models; the audit trail's GIN index on
            # its id array exists on PostgreSQL only (SQLite's JSON text cannot use one).
            if not (diff[0] == "remove_index" and diff[1].name.endswith("_search_trgm"))
            and not (
                shared_backend == "sqlite"
                and diff[0] == "add_index"
                and diff[1].name == "ix_audit_event_resource_ids"
            )
            and not (diff[0] == "remove_column" and diff[3].name == SEARCH_TEXT)
            and not (diff[0] == "remove_table" and diff[1].name == "alembic_version")
        ]
    engine.dispose()
    assert differences == []


@pytest.mark.parametrize("model", [Cabinet, Patient, Consultation])
def test_search_can_use_the_trigram_index(
    postgres_url: str, model: type[SQLModel], own_server: Callable[[str], Any], signer: Any
) -> None:
    with own_server(postgres_url) as base:  # provisions the default tenant (public)
        assert httpx.get(f"{base}/health/").status_code == 200
    # The count the list runs for one search term (the page has the same conditions).
    listing = LISTINGS[model]
    counted, _ = listing.statements((1, listing.ordered(""), False, (), True))
    query = counted.params(term_0_0="%lovelace%")
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {sql}"))
    engine.dispose()
    assert f"ix_{model.__tablename__}_search_trgm" in plan, plan


# A small trail in the default tenant: lists of 30 patients (every tenth one the first page,
# ids 1-30), views of one patient, spread over a year.
SMALL_TRAIL = """
INSERT INTO audit_event (at, user_id, username, action, resource, resource_id, resource_ids,
                         request_id, client_ip, status)
SELECT timestamptz '2026-01-01' + i * interval '1 hour', 1 + i % 5, 'u', kind.action,
       'patient', kind.one, kind.ids, 'r' || i, '10.0.0.1', 200
FROM generate_series(1, 6000) i,
LATERAL (SELECT CASE WHEN i % 2 = 1 THEN 'view' ELSE 'list' END AS action,
                CASE WHEN i % 2 = 1 THEN 1 + (i * 7919) % 5000 END AS one) choice,
LATERAL (SELECT choice.action, choice.one,
                CASE WHEN choice.one IS NOT NULL THEN ARRAY[choice.one]
                     ELSE ARRAY(SELECT generate_series(s, s + 29)) END AS ids
         FROM (SELECT CASE WHEN i % 20 = 0 THEN 1 ELSE 1 + (i * 104729) % 4970 END AS s) f
        ) kind
"""


def test_who_opened_a_record_is_read_from_its_own_index(
    postgres_url: str, own_server: Callable[[str], Any]
) -> None:
    """``?resource=patient&resource_id=42&action=view``: the events of one record, newest first,
    in a few index pages (at 2,000,000 events the array lookup walked the whole trail:
    docs/clinic.md)."""
    with own_server(postgres_url) as base:  # provisions the default tenant (public)
        assert httpx.get(f"{base}/health/").status_code == 200
    filters = audit_filter_values({"resource": "patient", "resource_id": 42, "action": "view"})
    listing = AUDIT_LISTING
    _, page = listing.statements((0, listing.ordered(""), False, tuple(sorted(filters)), False))
    query = page.params(**filters, page_limit=50, page_offset=0)
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text(SMALL_TRAIL))
        connection.exec_driver_sql("ANALYZE audit_event")
        plan = "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {sql}"))
    engine.dispose()
    # Both the count and the page.
    assert plan.count("ix_audit_event_resource_resource_id_at_id") == 2, plan


def test_the_planner_tracks_enough_ids_of_the_trail(
    postgres_url: str, own_server: Callable[[str], Any]
) -> None:
    """At 2,000,000 events, PostgreSQL's default statistics of ``resource_ids`` kept 50 ids and
    guessed 10,000 events for any other patient: "who saw patient 54321" (about 200 events)
    then walked 621,644 rows of the trail instead of reading the GIN index (docs/clinic.md).
    Migration 0005 has it track 10,000."""
    with own_server(postgres_url) as base:
        assert httpx.get(f"{base}/health/").status_code == 200
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        target = connection.exec_driver_sql(
            "SELECT attstattarget FROM pg_attribute "
            "WHERE attrelid = 'public.audit_event'::regclass AND attname = 'resource_ids'"
        ).scalar_one()
    engine.dispose()
    assert target == 1000
