"""/health/ (readiness with a database check) and /health/live, on both backends."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from common.db import create_db_engine, ping
from common.pytest_plugin import DatabaseUrlFactory
from common.testing import serve
from fastapi import FastAPI

AppFactory = Callable[..., FastAPI]


def engine_lifespan(url: str) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = create_db_engine(url)
        yield
        app.state.engine.dispose()

    return lifespan


def database_check(app: FastAPI) -> None:
    ping(app.state.engine)


def test_health_passes_with_a_reachable_database(
    make_app: AppFactory, database_url: DatabaseUrlFactory
) -> None:
    app = make_app(
        lifespan=engine_lifespan(database_url("health")), health_checks={"database": database_check}
    )
    with serve(app) as url:
        response = httpx.get(f"{url}/health/")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "status": "pass",
        "service": "sample",
        "version": "9.9.9",
        "checks": {
            "database": {"status": "pass", "time_ms": body["checks"]["database"]["time_ms"]}
        },
    }
    assert isinstance(body["checks"]["database"]["time_ms"], float)


def test_health_is_503_when_the_database_is_down(
    make_app: AppFactory, unused_tcp_port: int
) -> None:
    down = f"postgresql+psycopg2://postgres@127.0.0.1:{unused_tcp_port}/nothing"
    app = make_app(lifespan=engine_lifespan(down), health_checks={"database": database_check})
    with serve(app) as url:
        response = httpx.get(f"{url}/health/")
        live = httpx.get(f"{url}/health/live/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["database"]["status"] == "fail"
    assert body["checks"]["database"]["output"] == "OperationalError"
    assert "127.0.0.1" not in response.text  # no connection details leak
    assert live.status_code == 200
    assert live.json() == {"status": "pass", "service": "sample"}


def test_health_answers_within_about_two_seconds_when_a_check_hangs(
    make_app: AppFactory,
) -> None:
    async def hanging_check(_: FastAPI) -> None:
        await asyncio.sleep(30)  # a database that accepts the connection and never answers

    app = make_app(health_checks={"database": hanging_check, "cache": lambda _: None})
    with serve(app) as url:
        started = time.monotonic()
        response = httpx.get(f"{url}/health/", timeout=10)
        elapsed = time.monotonic() - started
    # 1.5 s timeout plus slack for a busy CI machine; the hang itself would take 30 s.
    assert elapsed < 3.5
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == {"status": "fail", "output": "timed out after 1.5s"}
    assert body["checks"]["cache"]["status"] == "pass"


def test_health_timeout_is_configurable(make_app: AppFactory) -> None:
    async def slow(_: FastAPI) -> None:
        await asyncio.sleep(30)

    app = make_app(health_checks={"slow": slow}, health_timeout=0.2)
    with serve(app) as url:
        started = time.monotonic()
        response = httpx.get(f"{url}/health/")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert elapsed < 1.0


def test_failing_check_reports_exception_type_only(make_app: AppFactory) -> None:
    def broken(_: FastAPI) -> None:
        raise ValueError("password=hunter2")

    with serve(make_app(health_checks={"database": broken})) as url:
        response = httpx.get(f"{url}/health")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {"status": "fail", "output": "ValueError"}
    assert "hunter2" not in response.text


def test_health_without_checks_passes(client: httpx.Client) -> None:
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {
        "status": "pass",
        "service": "sample",
        "version": "9.9.9",
        "checks": {},
    }
