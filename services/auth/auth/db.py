"""The auth database: its engine and its migrations (run by ``make migrate`` and at start-up)."""

from alembic import command
from common.db import alembic_config, create_db_engine, migrations_dir
from sqlalchemy import Engine, text

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
    config = alembic_config(
        migrations_dir(__file__), engine.url.render_as_string(hide_password=False)
    )
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def migrate(settings: AuthSettings) -> None:
    engine = create_engine(settings)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
