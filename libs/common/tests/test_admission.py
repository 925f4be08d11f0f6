"""MAX_ACTIVE_REQUESTS: /api/ requests served a few at a time, the others waiting in line.

Real HTTP against a real uvicorn: each ``/api/hold/{name}/`` request records when it started
and waits until the test releases it, so the test sees which requests run at once.
"""

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from common.settings import ServiceSettings
from common.testing import serve
from fastapi import APIRouter, FastAPI
from pydantic import ValidationError


class Holds:
    """Which requests have started, and a release per request (set from the test's thread)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.released: dict[str, threading.Event] = {}

    def release(self, name: str) -> None:
        self.released.setdefault(name, threading.Event()).set()

    def wait_started(self, count: int, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while len(self.started) < count:
            assert time.monotonic() < deadline, f"only {self.started} started"
            time.sleep(0.01)


def holding_router(holds: Holds) -> APIRouter:
    router = APIRouter()

    @router.get("/api/hold/{name}/")
    async def hold(name: str) -> dict[str, str]:
        holds.started.append(name)
        released = holds.released.setdefault(name, threading.Event())
        while not released.is_set():
            await asyncio.sleep(0.01)
        return {"name": name}

    return router


@pytest.fixture
def serve_holding(make_app: Callable[..., FastAPI]) -> Iterator[Callable[[int], tuple[str, Holds]]]:
    servers: list[Any] = []

    def start(max_active_requests: int) -> tuple[str, Holds]:
        holds = Holds()
        app = make_app(routers=[holding_router(holds)], max_active_requests=max_active_requests)
        server = serve(app)
        servers.append(server)
        return server.__enter__(), holds

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def _get(url: str, path: str) -> Future[httpx.Response]:
    executor = ThreadPoolExecutor(max_workers=1)
    future = executor.submit(httpx.get, url + path, timeout=10)
    executor.shutdown(wait=False)
    return future


def _waiting(url: str) -> float:
    for line in httpx.get(url + "/metrics/").text.splitlines():
        if line.startswith("http_requests_waiting "):
            return float(line.split()[1])
    raise AssertionError("http_requests_waiting is not exported")


def test_requests_beyond_the_limit_wait_their_turn_in_arrival_order(
    serve_holding: Callable[[int], tuple[str, Holds]],
) -> None:
    url, holds = serve_holding(2)
    responses = []
    for name in ["a", "b", "c", "d"]:
        responses.append(_get(url, f"/api/hold/{name}/"))
        time.sleep(0.1)  # arrival order a, b, c, d
    holds.wait_started(2)
    time.sleep(0.2)
    assert holds.started == ["a", "b"]  # c and d wait
    assert _waiting(url) == 2
    # /health/ and /metrics/ are not /api/: they never wait behind the API.
    assert httpx.get(url + "/health/live", timeout=2).status_code == 200

    holds.release("b")
    holds.wait_started(3)
    time.sleep(0.1)
    assert holds.started == ["a", "b", "c"]  # the first in line, not d
    assert _waiting(url) == 1
    for name in ["a", "c", "d"]:
        holds.release(name)
    assert [future.result().json()["name"] for future in responses] == ["a", "b", "c", "d"]
    assert holds.started == ["a", "b", "c", "d"]
    assert _waiting(url) == 0


def test_without_a_limit_every_request_is_served_at_once(
    serve_holding: Callable[[int], tuple[str, Holds]],
) -> None:
    url, holds = serve_holding(0)
    responses = [_get(url, f"/api/hold/{name}/") for name in ["a", "b", "c", "d"]]
    holds.wait_started(4)
    assert _waiting(url) == 0
    for name in ["a", "b", "c", "d"]:
        holds.release(name)
    assert all(future.result().status_code == 200 for future in responses)


def test_a_failing_request_gives_its_turn_back(
    serve_holding: Callable[[int], tuple[str, Holds]],
) -> None:
    url, _ = serve_holding(1)
    # 404s and errors inside the app release the turn: the next request is served at once.
    for _ in range(3):
        assert httpx.get(url + "/api/nowhere/", timeout=2).status_code == 404


def test_a_negative_limit_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="max_active_requests"):
        ServiceSettings(max_active_requests=-1)
