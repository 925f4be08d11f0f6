"""The tenants database: engine and Alembic migrations (``make migrate`` and start-up)."""

from common.db import create_db_engine, migrations_dir, upgrade
from sqlalchemy import Engine

from tenants.settings import TenantsSettings

MIGRATIONS = migrations_dir(__file__)
# Arbitrary constant: replicas starting together take turns at migrating (PostgreSQL).
MIGRATION_LOCK_KEY = 0x7E_4A_47_5F


def create_engine(settings: TenantsSettings) -> Engine:
    return create_db_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        application_name="dentiapro-tenants",
    )


def migrate(settings: TenantsSettings) -> None:
    """Bring the tenants database to the latest revision (idempotent, safe across replicas)."""
    engine = create_db_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        upgrade(MIGRATIONS, engine, lock_key=MIGRATION_LOCK_KEY)
    finally:
        engine.dispose()
