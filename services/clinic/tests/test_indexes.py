"""The schema the migrations build is the one the models describe, and searches can use
the trigram indexes (their expression must match the query's exactly)."""

from collections.abc import Callable
from typing import Any

import clinic.models
import httpx
import pytest
from clinic.crud import LISTINGS, SEARCH_TEXT
from clinic.models import Cabinet, Consultation, Patient
from common.testing import migration_drift
from sqlalchemy import create_engine
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
