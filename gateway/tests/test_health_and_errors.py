"""The gateway's aggregated ``/health/`` (answered by the edge), its liveness, and JSON error pages."""

import asyncio
import time
from typing import Any

import httpx
import pytest
from common.testing import free_port, serve
from fastapi import FastAPI
from fastapi.responses import JSONResponse


def test_health_passes_when_every_service_passes(edge_url: str) -> None:
    response = httpx.get(f"{edge_url}/health/", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "pass"
    assert set(body["services"]) == {"auth", "clinic", "tenants"}
    for name in ("auth", "clinic", "tenants"):
        assert body["services"][name]["status"] == "pass"
        assert body["services"][name]["time_ms"] >= 0


def test_health_names_an_unreachable_service(make_edge: Any) -> None:
    with make_edge(clinic_url=f"http://127.0.0.1:{free_port()}") as url:
        response = httpx.get(f"{url}/health/", timeout=10)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["services"]["clinic"]["status"] == "fail"
    assert "unreachable" in body["services"]["clinic"]["output"]
    assert body["services"]["tenants"]["status"] == "pass"


def test_health_gives_up_on_a_hung_service_within_the_timeout(
    make_edge: Any, hung_service_url: str
) -> None:
    with make_edge(clinic_url=hung_service_url, upstream_health_timeout=0.5) as url:
        response = httpx.get(f"{url}/health/", timeout=10)
    assert response.status_code == 503
    assert response.elapsed.total_seconds() < 2
    clinic = response.json()["services"]["clinic"]
    assert clinic == {"status": "fail", "output": "no answer within 0.5s"}


def test_health_fails_on_a_service_answering_an_error(make_edge: Any, tenants_url: str) -> None:
    # A server that answers, but not 200, on /health/ (here: 404 under an unknown prefix).
    with make_edge(auth_url=tenants_url + "/elsewhere") as url:
        response = httpx.get(f"{url}/health/", timeout=10)
    assert response.status_code == 503
    auth = response.json()["services"]["auth"]
    assert auth["status"] == "fail"
    assert auth["output"] == "HTTP 404"


class CountingService:
    """A service whose ``/health/`` takes a while, answers ``status`` and counts its calls."""

    def __init__(self, delay: float = 0.2) -> None:
        self.calls = 0
        self.status = 200
        self.app = FastAPI()

        @self.app.get("/health/")
        async def health() -> JSONResponse:
            self.calls += 1
            await asyncio.sleep(delay)
            return JSONResponse({"status": "pass"}, status_code=self.status)


def test_a_flood_of_health_calls_checks_each_service_once_per_second(make_edge: Any) -> None:
    """/health/ is unauthenticated: 40 concurrent calls must not become 40 checks of every
    service and its database. One check runs at a time, callers share it, and its answer
    serves for a second."""
    service = CountingService()
    with (
        serve(service.app) as upstream,
        make_edge(auth_url=upstream, clinic_url=upstream, tenants_url=upstream) as url,
    ):

        async def flood() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=10) as client:
                return await asyncio.gather(*(client.get(f"{url}/health/") for _ in range(40)))

        started = time.monotonic()
        responses = asyncio.run(flood())
        elapsed = time.monotonic() - started
        assert [r.status_code for r in responses] == [200] * 40
        assert {r.json()["status"] for r in responses} == {"pass"}
        # Three services, one check each; a second round only if the flood outlasted the
        # cache lifetime on a loaded machine.
        assert service.calls <= 3 * (1 + int(elapsed)), (service.calls, elapsed)
        assert service.calls < 40


def test_the_health_answer_is_renewed_after_a_second(make_edge: Any) -> None:
    service = CountingService(delay=0)
    with (
        serve(service.app) as upstream,
        make_edge(auth_url=upstream, clinic_url=upstream, tenants_url=upstream) as url,
    ):
        assert httpx.get(f"{url}/health/", timeout=10).status_code == 200
        service.status = 503
        # Within the second: the cached answer; after it, the failure shows.
        assert httpx.get(f"{url}/health/", timeout=10).status_code == 200
        time.sleep(1.1)
        response = httpx.get(f"{url}/health/", timeout=10)
        assert response.status_code == 503
        assert response.json()["services"]["clinic"]["output"] == "HTTP 503"
        assert service.calls == 6


def test_liveness_answers_while_the_process_runs(make_edge: Any) -> None:
    with make_edge(clinic_url=f"http://127.0.0.1:{free_port()}") as url:
        response = httpx.get(f"{url}/health/live", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "pass", "service": "edge"}


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (502, "Bad gateway: the service is unreachable."),
        (503, "Service unavailable, try again shortly."),
        (504, "Gateway timeout: the service did not answer in time."),
        (413, "Request body too large (limit 1 MiB)."),
        (429, "Request was throttled."),
        (404, "Not found."),
        (418, "I'm a Teapot."),
    ],
)
def test_error_pages_are_json_with_the_status(edge_url: str, status: int, detail: str) -> None:
    response = httpx.get(f"{edge_url}/errors/{status}/", timeout=10)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": detail}


@pytest.mark.parametrize(("status", "retry_after"), [(503, "5"), (429, "1")])
def test_error_pages_for_transient_failures_say_when_to_retry(
    edge_url: str, status: int, retry_after: str
) -> None:
    response = httpx.get(f"{edge_url}/errors/{status}/", timeout=10)
    assert response.headers["retry-after"] == retry_after


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_error_pages_answer_any_method(edge_url: str, method: str) -> None:
    response = httpx.request(method, f"{edge_url}/errors/404/", timeout=10)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize("status", ["200", "302", "999", "abc"])
def test_error_page_of_a_non_error_status_is_404(edge_url: str, status: str) -> None:
    response = httpx.get(f"{edge_url}/errors/{status}/", timeout=10)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
