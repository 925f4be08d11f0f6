"""The tenants database: its Alembic migrations (``dentiapro migrate`` and start-up)."""

from common.app import Database
from common.app import migrate as migrate_database
from common.db import migrations_dir

from tenants.settings import TenantsSettings

MIGRATIONS = migrations_dir(__file__)
# Arbitrary constant: replicas starting together take turns at migrating (PostgreSQL).
MIGRATION_LOCK_KEY = 0x7E_4A_47_5F


def migrate(settings: TenantsSettings) -> None:
    """Bring the tenants database to the latest revision (idempotent, safe across replicas)."""
    migrate_database(Database(settings.database_url, MIGRATIONS, MIGRATION_LOCK_KEY))
