"""The auth database: where it is and its migrations (applied at start-up by ``common.app``, and
by ``make migrate``); a synchronous engine for operator tools and tests."""

from common.app import Database
from common.db import create_db_engine, migrations_dir
from common.db import upgrade as migrate_database
from sqlalchemy import Engine

from auth.settings import AuthSettings

# Any constant shared by every auth replica: it serialises their migrations on PostgreSQL.
MIGRATION_LOCK_ID = 0x61757468  # "auth"


def database(settings: AuthSettings) -> Database:
    return Database(settings.database_url, migrations_dir(__file__), MIGRATION_LOCK_ID)


def create_engine(settings: AuthSettings) -> Engine:
    """A synchronous engine (psycopg2 or sqlite3) on the auth database, for tools."""
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
