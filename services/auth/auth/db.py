"""The auth database: its engine and its migrations (run by ``make migrate`` and at start-up)."""

from pathlib import Path

from alembic import command
from common.db import alembic_config, create_db_engine
from sqlalchemy import Engine, text

from auth.settings import AuthSettings

# Any constant shared by every auth replica: it serialises their migrations on PostgreSQL.
MIGRATION_LOCK_ID = 0x61757468  # "auth"


def migrations_dir() -> Path:
    """The Alembic tree: inside the package when installed from a wheel, beside it in a checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise RuntimeError("the auth migrations directory is missing")


def create_engine(settings: AuthSettings) -> Engine:
    return create_db_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        application_name="dentiapro-auth",
    )


def upgrade(engine: Engine) -> None:
    """Bring ``engine``'s database to the newest revision; safe when replicas start together."""
    config = alembic_config(migrations_dir(), engine.url.render_as_string(hide_password=False))
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
