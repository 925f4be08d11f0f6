"""Pytest fixtures shared by every service's tests (loaded through the ``pytest11`` entry point).

``backend`` runs a test once on SQLite and once on PostgreSQL; ``database_url`` hands out
fresh, empty databases on that backend and drops them afterwards. PostgreSQL comes from
``TEST_POSTGRES_URL`` (default: the local server, trust auth). Without a reachable server the
PostgreSQL variants skip, except in CI (``CI=true``), where they fail: CI must prove both.
"""

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgresql")

DatabaseUrlFactory = Callable[[str], str]


def postgres_server_url() -> str:
    return os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def postgres_available() -> str | None:
    """None when the test server answers, else the reason it does not."""
    engine = create_engine(postgres_server_url(), connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return f"PostgreSQL test server unreachable ({type(exc).__name__})"
    finally:
        engine.dispose()
    return None


def require_postgres() -> None:
    reason = postgres_available()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI runs every database test on PostgreSQL")
    pytest.skip(reason)


def create_postgres_database(prefix: str) -> str:
    name = f"test_{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_server_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(postgres_server_url()).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    admin = create_engine(postgres_server_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend this test runs on: ``sqlite`` or ``postgresql``."""
    if request.param == "postgresql":
        require_postgres()
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[DatabaseUrlFactory]:
    """A factory of fresh, empty database URLs on ``backend``, cleaned up after the test."""
    created: list[str] = []

    def make(prefix: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'{prefix}_{uuid.uuid4().hex[:6]}.sqlite3'}"
        url = create_postgres_database(prefix)
        created.append(url)
        return url

    yield make
    for url in created:
        drop_postgres_database(url)
