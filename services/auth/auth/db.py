"""The auth database: its engine and its migrations (run by ``make migrate`` and at start-up)."""

from common.db import create_db_engine, migrations_dir
from common.db import upgrade as migrate_database
from sqlalchemy import Engine

from auth.settings import AuthSettings

# Any constant shared by every auth replica: it serialises their migrations on PostgreSQL.
MIGRATION_LOCK_ID = 0x61757468  # "auth"


def create_engine(settings: AuthSettings) -> Engine:
    return create_db_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        application_name="dentiapro-auth",
    )


def upgrade(engine: Engine) -> None:
    """Bring ``engine``'s database to the newest revision; safe when replicas start together."""
    migrate_database(migrations_dir(__file__), engine, lock_key=MIGRATION_LOCK_ID)


def migrate(settings: AuthSettings) -> None:
    engine = create_engine(settings)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
