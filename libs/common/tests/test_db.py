"""common.db: engines set up each backend the way every service relies on."""

from pathlib import Path

import pytest
from common.db import create_db_engine, is_sqlite, ping, upgrade
from common.pytest_plugin import DatabaseUrlFactory
from sqlalchemy import text


def test_sqlite_engine_sets_wal_and_foreign_keys_on_every_connection(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'db' / 'x.sqlite3'}", pool_size=2)
    try:
        # Two connections held at once: each was configured on connect, not just the first.
        with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
                assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
                assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert (tmp_path / "db" / "x.sqlite3").exists()
    finally:
        engine.dispose()


def test_sqlite_foreign_keys_are_enforced(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'fk.sqlite3'}")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
            connection.execute(
                text(
                    "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER "
                    "NOT NULL REFERENCES parent (id))"
                )
            )
        with pytest.raises(Exception, match="FOREIGN KEY"), engine.begin() as connection:
            connection.execute(text("INSERT INTO child (parent_id) VALUES (42)"))
    finally:
        engine.dispose()


def test_sqlite_lower_folds_non_ascii_letters(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'lower.sqlite3'}")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT lower('ÉLODIE ZÄHNE')")).scalar() == (
                "élodie zähne"
            )
            assert connection.execute(text("SELECT lower(NULL)")).scalar() is None
    finally:
        engine.dispose()


def test_engine_pings_on_both_backends(database_url: DatabaseUrlFactory, backend: str) -> None:
    url = database_url("common")
    assert is_sqlite(url) == (backend == "sqlite")
    engine = create_db_engine(url, application_name="common-tests")
    try:
        assert ping(engine) >= 0
        if backend == "postgresql":
            with engine.connect() as connection:
                assert connection.execute(text("SHOW application_name")).scalar() == (
                    "common-tests"
                )
                assert connection.execute(text("SHOW statement_timeout")).scalar() == "30s"
    finally:
        engine.dispose()


def test_ping_raises_when_the_server_is_unreachable(unused_tcp_port: int) -> None:
    engine = create_db_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{unused_tcp_port}/x")
    try:
        with pytest.raises(Exception, match=r"(?i)connect"):
            ping(engine)
    finally:
        engine.dispose()


ENV_PY = """
from alembic import context

context.configure(connection=context.config.attributes["connection"])
with context.begin_transaction():
    context.run_migrations()
"""

# Records the statement timeout its upgrade runs under.
REVISION = """
from alembic import op

revision = "a1"
down_revision = None


def upgrade():
    timeout = op.get_bind().exec_driver_sql("SHOW statement_timeout").scalar()
    op.execute("CREATE TABLE seen (timeout text)")
    op.execute(f"INSERT INTO seen VALUES ('{timeout}')")
"""


def test_migrations_run_without_the_request_statement_timeout(
    database_url: DatabaseUrlFactory, backend: str, tmp_path: Path
) -> None:
    """A migration rewriting a big table must not die at the 30 s a request gets."""
    if backend != "postgresql":
        pytest.skip("SQLite has no statement timeout")
    (tmp_path / "versions").mkdir()
    (tmp_path / "env.py").write_text(ENV_PY)
    (tmp_path / "versions" / "a1_seen.py").write_text(REVISION)
    engine = create_db_engine(database_url("common"))
    try:
        upgrade(tmp_path, engine, lock_key=42)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT timeout FROM seen")).scalar() == "0"
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "30s"
    finally:
        engine.dispose()
