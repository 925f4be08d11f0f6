"""common.db: engines set up each backend the way every service relies on."""

import asyncio
from pathlib import Path

import pytest
from common.db import (
    UnsupportedDatabaseUrl,
    async_url,
    create_async_db_engine,
    create_db_engine,
    is_sqlite,
    is_unavailable,
    ping,
    ping_async,
    upgrade,
)
from common.pytest_plugin import DatabaseUrlFactory, drop_postgres_database
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


# --- the request path's async engines ---


@pytest.mark.parametrize(
    ("configured", "derived"),
    [
        (
            "postgresql+psycopg2://u:p%40ss@db:5432/clinic",
            "postgresql+asyncpg://u:p%40ss@db:5432/clinic",
        ),
        ("postgresql://u@db/clinic", "postgresql+asyncpg://u@db/clinic"),
        (
            "postgresql+psycopg2://u@db/clinic?sslmode=require&connect_timeout=7",
            "postgresql+asyncpg://u@db/clinic?ssl=require&timeout=7",
        ),
        ("sqlite:////var/lib/x.sqlite3", "sqlite+aiosqlite:////var/lib/x.sqlite3"),
    ],
)
def test_the_async_url_is_derived_from_the_configured_one(configured: str, derived: str) -> None:
    assert async_url(configured).render_as_string(hide_password=False) == derived


def test_an_unsupported_backend_is_refused_with_a_clear_message() -> None:
    with pytest.raises(UnsupportedDatabaseUrl, match="mysql"):
        async_url("mysql://u@db/x")


def test_async_sqlite_connections_are_set_up_like_sync_ones(tmp_path: Path) -> None:
    async def check() -> None:
        engine = create_async_db_engine(f"sqlite:///{tmp_path / 'a' / 'x.sqlite3'}", pool_size=2)
        try:
            async with engine.connect() as first, engine.connect() as second:
                for connection in (first, second):
                    pragmas = [
                        (await connection.execute(text(f"PRAGMA {name}"))).scalar()
                        for name in ("journal_mode", "foreign_keys", "busy_timeout")
                    ]
                    assert pragmas == ["wal", 1, 30000]
                    lowered = await connection.execute(text("SELECT lower('ÉLODIE')"))
                    assert lowered.scalar() == "élodie"
        finally:
            await engine.dispose()

    asyncio.run(check())


def test_async_postgresql_connections_carry_name_and_statement_timeout(
    database_url: DatabaseUrlFactory, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL settings")

    async def check() -> None:
        engine = create_async_db_engine(database_url("common"), application_name="async-tests")
        try:
            async with engine.connect() as connection:
                name = (await connection.execute(text("SHOW application_name"))).scalar()
                timeout = (await connection.execute(text("SHOW statement_timeout"))).scalar()
            assert (name, timeout) == ("async-tests", "30s")
            assert await ping_async(engine) >= 0
        finally:
            await engine.dispose()

    asyncio.run(check())


def test_a_pooled_connection_the_server_terminated_is_replaced_without_an_error(
    database_url: DatabaseUrlFactory, backend: str
) -> None:
    """No pre-ping round trip per checkout, yet a backend killed by the server (a restart, an
    operator's pg_terminate_backend) is noticed before use: the request gets a new one."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL backends")
    url = database_url("common")

    async def check() -> None:
        engine = create_async_db_engine(url, pool_size=2)
        try:
            async with engine.connect() as first, engine.connect() as second:
                pids = [
                    (await c.execute(text("SELECT pg_backend_pid()"))).scalar()
                    for c in (first, second)
                ]
            admin = create_db_engine(url)
            with admin.connect() as connection:
                for pid in pids:
                    connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            admin.dispose()
            await asyncio.sleep(0.2)
            for _ in range(3):
                async with engine.connect() as connection:
                    pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar()
                assert pid not in pids
        finally:
            await engine.dispose()

    asyncio.run(check())


def test_what_counts_as_the_database_being_unavailable(
    database_url: DatabaseUrlFactory, backend: str, unused_tcp_port: int
) -> None:
    """Unreachable, a database that is gone, statement timeout: 503 material. A bad statement:
    a bug (500)."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL errors")
    url = database_url("common")
    dropped = database_url("common")
    drop_postgres_database(dropped)

    async def errors() -> list[BaseException]:
        found: list[BaseException] = []
        unreachable = create_async_db_engine(
            f"postgresql+psycopg2://postgres@127.0.0.1:{unused_tcp_port}/x"
        )
        gone = create_async_db_engine(dropped)
        engine = create_async_db_engine(url)
        for engine_, sql in (
            (unreachable, "SELECT 1"),
            (gone, "SELECT 1"),
            (engine, "SET statement_timeout = 50; SELECT pg_sleep(1)"),
            (engine, "SELECT no_such_column FROM pg_class"),
        ):
            try:
                async with engine_.connect() as connection:
                    for statement in sql.split(";"):
                        await connection.execute(text(statement))
            except Exception as exc:
                found.append(exc)
        await unreachable.dispose()
        await gone.dispose()
        await engine.dispose()
        return found

    refused, missing, timed_out, bad = asyncio.run(errors())
    assert is_unavailable(refused)
    assert is_unavailable(missing)
    assert is_unavailable(timed_out)
    assert not is_unavailable(bad)
