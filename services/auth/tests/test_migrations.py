"""The schema the auth migrations build is the one ``auth.models`` describes. Production
builds its schema from the migrations alone (no ``create_all``), so a model changed without
its migration, or the reverse, would otherwise only show up there."""

from collections.abc import Callable
from datetime import UTC, datetime

import auth.db
import auth.models
from alembic import command
from auth.db import create_engine, migrate
from auth.settings import AuthSettings
from common.db import alembic_config, migrations_dir
from common.testing import migration_drift
from sqlalchemy import column, func, insert, inspect, select, table


def test_migrated_schema_matches_the_models(auth_settings: Callable[..., AuthSettings]) -> None:
    settings = auth_settings()
    migrate(settings)
    engine = create_engine(settings)
    try:
        with engine.connect() as connection:
            assert migration_drift(connection, auth.models) == []
    finally:
        engine.dispose()


def test_a_first_release_database_keeps_its_users_and_refresh_tokens_through_the_upgrade(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    """0002 drops user.founder_of; on SQLite that rebuilds the user table, and with foreign
    keys on, dropping the old one would delete every refresh token (everyone logged out)."""
    settings = auth_settings()
    engine = create_engine(settings)
    config = alembic_config(migrations_dir(auth.db.__file__), settings.database_url)
    users = table(
        "user", *(column(name) for name in ("id", "username", "username_key", "email", "tenant",
        "role", "is_active", "is_superuser", "password_hash", "founder_of", "date_joined",
        "updated_at"))
    )  # fmt: skip
    tokens = table(
        "refresh_token",
        *(column(name) for name in ("jti", "family_id", "user_id", "created_at", "expires_at")),
    )
    now = datetime.now(UTC)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
            connection.execute(
                insert(users).values(
                    id=7, username="founder", username_key="founder", email="f@example.com",
                    tenant="clinic_f", role="admin", is_active=True, is_superuser=False,
                    password_hash="x", founder_of="clinic_f", date_joined=now, updated_at=now,
                )
            )  # fmt: skip
            connection.execute(
                insert(tokens).values(
                    jti="j1", family_id="f1", user_id=7, created_at=now, expires_at=now
                )
            )

        migrate(settings)

        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(tokens)).scalar() == 1
            kept = connection.execute(select(users.c.username, users.c.role)).all()
            columns = {c["name"] for c in inspect(connection).get_columns("user")}
        assert [tuple(row) for row in kept] == [("founder", "admin")]
        assert "founder_of" not in columns
    finally:
        engine.dispose()
