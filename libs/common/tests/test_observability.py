"""One JSON log line per request and Prometheus metrics labelled by route template."""

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from common.testing import TestSigner, serve
from prometheus_client.parser import text_string_to_metric_families

AppFactory = Callable[..., Any]


def access_lines(capsys: pytest.CaptureFixture[str], count: int) -> list[dict[str, Any]]:
    """The access log lines written so far (waits briefly: the line follows the response)."""
    lines: list[dict[str, Any]] = []
    deadline = time.monotonic() + 3
    while True:
        for line in capsys.readouterr().out.splitlines():
            entry = json.loads(line)  # every line on stdout is JSON
            if entry["logger"] == "dentiapro.access":
                lines.append(entry)
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


@pytest.mark.usefixtures("restore_logging")
def test_one_json_log_line_per_request_with_principal(
    make_app: AppFactory, signer: TestSigner, capsys: pytest.CaptureFixture[str]
) -> None:
    token = signer.mint(user_id=41, tenant="clinic_a")
    with serve(make_app(token_verifier=signer.verifier())) as url:
        capsys.readouterr()
        response = httpx.get(
            f"{url}/api/me/",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "log-me-1"},
        )
        assert response.status_code == 200
        [entry] = access_lines(capsys, 1)
    assert entry["service"] == "sample"
    assert entry["method"] == "GET"
    assert entry["route"] == "/api/me/"
    assert entry["status"] == 200
    assert entry["request_id"] == "log-me-1"
    assert entry["tenant"] == "clinic_a"
    assert entry["user_id"] == 41
    assert isinstance(entry["duration_ms"], float)
    assert token not in json.dumps(entry)


@pytest.mark.usefixtures("restore_logging")
def test_log_line_uses_route_template_and_omits_principal_when_anonymous(
    make_app: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(make_app()) as url:
        capsys.readouterr()
        httpx.get(f"{url}/api/items/555/")
        httpx.get(f"{url}/api/me/", headers={"Authorization": "Bearer garbage"})
        first, second = access_lines(capsys, 2)
    assert first["route"] == "/api/items/{item_id}/"
    assert first["status"] == 200
    assert "555" not in json.dumps(first)
    assert "tenant" not in first
    assert "user_id" not in first
    assert second["status"] == 401
    assert "garbage" not in json.dumps(second)


@pytest.mark.usefixtures("restore_logging")
def test_unhandled_error_logs_500_with_request_id(
    make_app: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(make_app()) as url:
        capsys.readouterr()
        httpx.get(f"{url}/api/errors/crash/", headers={"X-Request-ID": "boom-1"})
        [entry] = access_lines(capsys, 1)
    assert entry["status"] == 500
    assert entry["request_id"] == "boom-1"
    assert entry["route"] == "/api/errors/{kind}/"


def samples(url: str) -> list[Any]:
    text = httpx.get(f"{url}/metrics/").text
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def test_metrics_use_route_templates_not_raw_paths(client: httpx.Client, sample_url: str) -> None:
    assert client.get("/api/items/987654321/").status_code == 200
    assert client.get("/api/nowhere/123456789/").status_code == 404
    text = client.get("/metrics/").text
    assert "987654321" not in text
    assert "123456789" not in text
    by_route = {
        (s.labels.get("route"), s.labels.get("method"), s.labels.get("status")): s.value
        for s in samples(sample_url)
        if s.name == "http_requests_total"
    }
    assert by_route[("/api/items/{item_id}/", "GET", "200")] >= 1
    assert by_route[("<unmatched>", "GET", "404")] >= 1


def test_made_up_methods_share_one_metrics_label(client: httpx.Client, sample_url: str) -> None:
    # Clients choose the method (WebDAV's and others reach the app): none adds its own series.
    unusual = {"PROPFIND", "MKCOL", "PURGE"}
    for method in unusual:
        assert client.request(method, "/api/items/1/").status_code == 405
    methods = {s.labels.get("method") for s in samples(sample_url) if "method" in s.labels}
    assert not unusual & methods
    assert "OTHER" in methods


def test_metrics_have_latency_histogram_in_flight_and_pool_figures(
    client: httpx.Client, sample_url: str
) -> None:
    client.get("/api/items/1/")
    names = {s.name for s in samples(sample_url)}
    assert "http_request_duration_seconds_bucket" in names
    assert "http_request_duration_seconds_count" in names
    assert {
        "http_requests_in_flight",
        "db_pool_size",
        "db_pool_checked_out",
        "db_pool_overflow",
    } <= names
    assert any(name.startswith("process_") for name in names)
    durations = [
        s
        for s in samples(sample_url)
        if s.name == "http_request_duration_seconds_count"
        and s.labels["route"] == "/api/items/{item_id}/"
    ]
    assert durations
    assert durations[0].value >= 1


def test_metrics_counts_grow_with_requests(client: httpx.Client, sample_url: str) -> None:
    def count() -> float:
        return sum(
            s.value
            for s in samples(sample_url)
            if s.name == "http_requests_total"
            and s.labels["route"] == "/api/errors/{kind}/"
            and s.labels["status"] == "409"
        )

    before = count()
    for _ in range(3):
        client.get("/api/errors/conflict/")
    assert count() - before == 3


def test_metrics_endpoint_serves_prometheus_text(client: httpx.Client) -> None:
    response = client.get("/metrics/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
