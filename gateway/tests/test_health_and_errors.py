"""The gateway's aggregated ``/health/`` (answered by the edge), its liveness, and JSON error pages."""

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from common.testing import free_port


@pytest.fixture
def hung_service_url() -> Iterator[str]:
    """A port that accepts connections and never answers (a stopped process behaves so)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


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
