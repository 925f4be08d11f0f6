"""Database engines for SQLite (the embedded default) and PostgreSQL, async and sync.

Requests are served on the event loop through SQLAlchemy's asyncio extension: asyncpg for
PostgreSQL, aiosqlite for SQLite (``create_async_db_engine``). Operators configure the
documented ``postgresql+psycopg2://`` (or ``sqlite:///``) URLs; ``async_url`` derives the async
driver's URL from them. Alembic migrations and operator tools stay synchronous on psycopg2
(``create_db_engine``), where a thread is the right tool.

Both kinds of engine set each backend up the same way: SQLite connections get WAL,
``foreign_keys=ON`` and a Unicode-aware ``lower()``; PostgreSQL connections a bounded pool, a
liveness check on checkout (a terminated backend or a server restart is noticed before use,
not as a 500) and short connect/statement timeouts, so a hung server turns into a quick 503.

Engines are made through ``sqlalchemy.create_engine`` and ``sqlalchemy.ext.asyncio.
create_async_engine`` looked up when called, not imported by name: with tracing on
(``common.tracing``), OpenTelemetry's SQLAlchemy instrumentation wraps those two, and every
engine made after that traces its statements.
"""

import logging
import select
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy
import sqlalchemy.ext.asyncio
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import Depends, Request
from sqlalchemy import Connection, DateTime, Dialect, Engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool
from sqlalchemy.types import TypeDecorator
from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger("dentiapro.db")

CONNECT_TIMEOUT_SECONDS = 3
STATEMENT_TIMEOUT_MS = 30_000


def utcnow() -> datetime:
    return datetime.now(UTC)


class DatetimeOutOfRange(ValueError):
    """A date-time with no UTC equivalent (0001-01-01T00:00+01:00)."""

    def __init__(self) -> None:
        super().__init__("Datetime is out of range.")


def as_utc(value: datetime) -> datetime:
    """Aware UTC; a naive value is taken as UTC. ``DatetimeOutOfRange`` if it has none."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise DatetimeOutOfRange() from None


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python on both backends.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as naive
    UTC (which keeps string comparisons in ``updated_after`` and date filters correct).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return as_utc(value)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


# --- the async driver's URL, derived from the configured one ---

ASYNC_DRIVERS = {"postgresql": "asyncpg", "sqlite": "aiosqlite"}
# libpq query parameters an operator may have put in a psycopg2 URL, as asyncpg names them.
_LIBPQ_TO_ASYNCPG = {"sslmode": "ssl", "connect_timeout": "timeout"}


class UnsupportedDatabaseUrl(ValueError):
    """A database URL whose backend DentiaPro does not serve (neither PostgreSQL nor SQLite)."""


def async_url(url: str) -> URL:
    """The URL the request path connects with: ``postgresql+psycopg2://`` (or any PostgreSQL
    driver) becomes ``postgresql+asyncpg://``, ``sqlite:///`` becomes ``sqlite+aiosqlite:///``;
    the libpq parameters asyncpg knows under another name (``sslmode``, ``connect_timeout``)
    are renamed, so an operator's configuration works unchanged."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in ASYNC_DRIVERS:
        raise UnsupportedDatabaseUrl(f"unsupported database backend: {backend!r}")
    query = {_LIBPQ_TO_ASYNCPG.get(key, key): value for key, value in parsed.query.items()}
    return parsed.set(drivername=f"{backend}+{ASYNC_DRIVERS[backend]}", query=query)


def _unicode_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    # SQLite's built-in lower() folds ASCII only; searches must be case-insensitive for "É" too.
    dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_file(url: URL) -> None:
    database = url.database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _socket_has_data(dbapi_connection: Any) -> bool:
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _check_alive(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled psycopg2 connection the server has closed; the pool opens a new one.

    Cheaper than ``pool_pre_ping`` (a ``SELECT 1`` round trip and transaction per checkout): an
    idle connection has nothing to read, and a server that terminates a backend or shuts down
    sends a FATAL message and closes the socket, which makes it readable. Only then is the
    connection pinged (anything else readable, e.g. a notice, is harmless). A connection lost
    without a word (a network partition) still fails its request, and that disconnect
    invalidates the whole pool: at most one failed request.
    """
    try:
        if dbapi_connection.closed:
            raise DisconnectionError("connection closed")
        if not _socket_has_data(dbapi_connection):
            return
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
    except DisconnectionError:
        raise
    except Exception as exc:  # the driver's error for a dead connection, whichever it is
        raise DisconnectionError(type(exc).__name__) from exc


def _check_alive_async(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """The asyncpg twin of ``_check_alive``, at no cost: asyncpg reads its socket from the event
    loop, so a backend the server terminated (or a server that went away) has already marked
    the connection closed when it is checked out; no ping is needed to find out."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("connection closed by the server")


def create_db_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 10, application_name: str = "dentiapro"
) -> Engine:
    """A synchronous engine (psycopg2 or sqlite3) for migrations and operator tools."""
    if is_sqlite(url):
        _sqlite_file(make_url(url))
        engine = sqlalchemy.create_engine(
            url,
            poolclass=QueuePool,
            pool_size=pool_size,
            max_overflow=max_overflow,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = sqlalchemy.create_engine(
        url,
        # Error messages (logged on a 500) must not carry patient data or other values.
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=5,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "application_name": application_name,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        },
    )
    event.listen(engine, "checkout", _check_alive)
    return engine


def create_async_db_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    application_name: str = "dentiapro",
    autocommit: bool = False,
) -> AsyncEngine:
    """The request path's engine for ``url`` (a configured, synchronous-driver URL): asyncpg or
    aiosqlite, set up as ``create_db_engine`` sets up its backend.

    No ``pool_pre_ping``: a checkout costs no round trip (``_check_alive_async``).
    ``autocommit`` (PostgreSQL): every statement is its own transaction, so a request made of
    single atomic statements pays no BEGIN/COMMIT round trips; a connection that needs a
    transaction asks for one (``execution_options(isolation_level="READ COMMITTED")``).
    """
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        _sqlite_file(target)
        engine = sqlalchemy.ext.asyncio.create_async_engine(
            target,
            poolclass=AsyncAdaptedQueuePool,
            pool_size=pool_size,
            max_overflow=max_overflow,
            connect_args={"timeout": 30},
            hide_parameters=True,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {
        "server_settings": {
            "application_name": application_name,
            "statement_timeout": str(STATEMENT_TIMEOUT_MS),
        },
    }
    if "timeout" not in target.query:
        connect_args["timeout"] = CONNECT_TIMEOUT_SECONDS
    engine = sqlalchemy.ext.asyncio.create_async_engine(
        target,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=5,
        pool_recycle=1800,
        connect_args=connect_args,
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
    )
    event.listen(engine.sync_engine, "checkout", _check_alive_async)
    return engine


def ping(engine: Engine) -> float:
    """Run ``SELECT 1``; return the time it took in milliseconds (raises when it fails)."""
    started = time.perf_counter()
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return (time.perf_counter() - started) * 1000


async def ping_async(engine: AsyncEngine) -> float:
    """``ping`` on the request path's engine."""
    started = time.perf_counter()
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return (time.perf_counter() - started) * 1000


# --- what counts as "the database is unavailable" (a 503, never a 500) ---

# SQLSTATE classes of a server that cannot serve now: connection exceptions (08), a login
# refused (28) or a database that is gone (3D: dropped, or not restored yet), insufficient
# resources (53), operator intervention (57: shutdown, statement timeout), system errors (58).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "28", "3D", "53", "57", "58")


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached or cannot serve right now (connect
    refused or timed out, a connection lost, the pool exhausted, a shutdown, a statement
    timeout), as opposed to an error in the statement or the data."""
    if isinstance(exc, sa_exc.DBAPIError):
        # No statement: the error came while connecting (asyncpg reports a database that is
        # gone, or a refused login, as a plain DBAPIError; psycopg2 as an OperationalError).
        if (
            exc.statement is None
            or exc.connection_invalidated
            or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
        ):
            return True
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return isinstance(state, str) and state.startswith(_UNAVAILABLE_SQLSTATE_CLASSES)
    # asyncpg raises OS-level errors (refused, reset) and timeouts while connecting.
    return isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError | OSError | TimeoutError)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session on the service's engine (``app.state.engine``), closed when the route returns."""
    async with AsyncSession(request.app.state.engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def migrations_dir(package_file: str) -> Path:
    """A service's Alembic tree, given its package's ``__file__``.

    A built wheel carries the tree inside the package (hatch ``force-include``); a checkout keeps
    it beside the package.
    """
    package = Path(package_file).resolve().parent
    for candidate in (package / "migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise RuntimeError(f"no Alembic migrations found for {package.name}")


def alembic_config(script_location: Path, url: str) -> Config:
    """An Alembic configuration built in code, so no service needs an ``alembic.ini``."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def without_statement_timeout(connection: Connection) -> None:
    """Lift the engine's request-sized statement timeout for the rest of this transaction: a
    migration rewriting a large table (or building its index) may take longer, and a timed-out
    one would be retried, and time out, on every start."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SET LOCAL statement_timeout = 0"))


def upgrade(script_location: Path, engine: Engine, *, lock_key: int) -> None:
    """Apply a service's migrations to ``engine``'s database (idempotent).

    On PostgreSQL the upgrade runs under ``pg_advisory_xact_lock(lock_key)``: replicas that
    start together take turns instead of racing to create the same tables. ``lock_key`` is
    any constant of the service's own.
    """
    config = alembic_config(script_location, engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
        without_statement_timeout(connection)
        current = MigrationContext.configure(connection).get_current_revision()
        if is_newer_release(script_location, current):
            return
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def known_revisions(script_location: Path) -> frozenset[str]:
    script = ScriptDirectory.from_config(alembic_config(script_location, "sqlite://"))
    return frozenset(revision.revision for revision in script.walk_revisions())


def is_newer_release(
    script_location: Path, revision: str | None, known: frozenset[str] | None = None
) -> bool:
    """True, with a warning, when the database is at a revision this release does not know:
    a later release migrated it (a rolling upgrade, or a rollback to this one). Migrations are
    expand-then-contract, so this release still works on it; refusing to start would turn a
    rollback into an outage. ``known``: the revisions of ``script_location``, if already read.
    """
    if revision is None or revision in (known or known_revisions(script_location)):
        return False
    log.warning(
        "database at revision %s, newer than this release knows; not migrating",
        revision,
        extra={"migrations": script_location.parent.name},
    )
    return True
