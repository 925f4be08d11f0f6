"""What the gateway itself guarantees: JSON errors, body limit, request ids, metrics."""

import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families


@pytest.mark.parametrize(
    "path", ["/api/patientsXYZ", "/api/patientsXYZ/1/", "/internal/tenants/resolve/"]
)
def test_unrouted_paths_are_a_json_404(gateway: httpx.Client, path: str) -> None:
    response = gateway.get(path)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_paths_without_trailing_slash_are_served_identically(
    api: Any, gateway: httpx.Client
) -> None:
    _, headers = api.tenant_admin(api.create_tenant())
    response = gateway.get("/api/patients", headers=headers)
    assert response.status_code == 200
    assert response.json()["count"] == 0


def test_body_over_one_mib_is_a_json_413(api: Any, gateway: httpx.Client) -> None:
    _, headers = api.tenant_admin(api.create_tenant())
    body = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = gateway.post(
        "/api/patients/", content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large (limit 1 MiB)."}


def test_put_over_one_mib_is_a_json_413_and_reads_are_not_buffered(
    api: Any, gateway: httpx.Client
) -> None:
    """Writes pass the body limit on their own router; GET and HEAD skip the buffering."""
    _, headers = api.tenant_admin(api.create_tenant())
    created = gateway.post(
        "/api/patients/",
        json={"name": "Ada Lovelace", "birthdate": "1990-01-01", "contact_number": "0123456"},
        headers=headers,
    )
    assert created.status_code == 201
    path = f"/api/patients/{created.json()['id']}/"
    body = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = gateway.put(
        path, content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large (limit 1 MiB)."}
    # A GET that carries a body is held to the same limit (DESIGN: bodies over 1 MiB, 413).
    response = gateway.request(
        "GET", path, content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large (limit 1 MiB)."}
    get = gateway.get(path, headers=headers)
    head = gateway.head(path, headers=headers)
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert gateway.head(path).status_code == 401  # still behind the token check


def test_request_id_from_the_client_is_echoed(api: Any, gateway: httpx.Client) -> None:
    _, headers = api.tenant_admin(api.create_tenant())
    request_id = f"e2e-{uuid.uuid4().hex}"
    for method, path, extra in [
        ("GET", "/api/patients/", headers),
        ("GET", "/api/patients/", {}),  # the token check's 401
        ("GET", "/api/nowhere/", {}),  # the gateway's 404
        ("POST", "/api/auth/login/", {}),  # an unprotected route
    ]:
        response = gateway.request(
            method,
            path,
            headers={**extra, "X-Request-ID": request_id},
            json={} if method == "POST" else None,
        )
        assert response.headers["x-request-id"] == request_id, (method, path)


def test_request_id_is_created_when_the_client_sends_none(api: Any, gateway: httpx.Client) -> None:
    _, headers = api.tenant_admin(api.create_tenant())
    response = gateway.get("/api/patients/", headers=headers)
    assert 0 < len(response.headers["x-request-id"]) <= 128


def test_failed_login_throttle_keeps_retry_after_through_the_gateway(
    api: Any, gateway: httpx.Client
) -> None:
    username, _ = api.tenant_admin(api.create_tenant())
    statuses = []
    for _ in range(12):
        response = gateway.post(
            "/api/auth/login/", json={"username": username, "password": "wrong-password"}
        )
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert int(response.headers["retry-after"]) > 1
    assert "throttled" in response.json()["detail"]


def _families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_gateway_metrics_are_traefiks_prometheus_text(gateway: httpx.Client) -> None:
    gateway.get("/api/patients/")
    response = gateway.get("/metrics/")
    assert response.status_code == 200
    families = _families(response.text)
    routers = {
        sample.labels.get("router") for sample in families["traefik_router_requests"].samples
    }
    assert "clinic@file" in routers


@pytest.mark.parametrize("service", ["auth", "clinic", "tenants", "edge"])
def test_every_process_serves_prometheus_metrics(running: Any, service: str) -> None:
    response = httpx.get(f"{running.processes.url(service)}/metrics/", timeout=10)
    assert response.status_code == 200
    families = _families(response.text)
    assert "http_requests" in families
    assert "http_request_duration_seconds" in families


def _token_checks(running: Any) -> dict[tuple[str, str], float]:
    text = httpx.get(running.processes.token_check_metrics_url, timeout=10).text
    return {
        (sample.labels["result"], sample.labels["reason"]): sample.value
        for sample in _families(text)["gateway_token_checks"].samples
        if sample.name == "gateway_token_checks_total"
    }


def test_token_checks_are_counted_on_the_gateways_internal_entry_point(
    running: Any, api: Any, gateway: httpx.Client
) -> None:
    _, headers = api.tenant_admin(api.create_tenant())
    before = _token_checks(running)
    assert gateway.get("/api/patients/", headers=headers).status_code == 200
    assert gateway.get("/api/patients/").status_code == 401
    after = _token_checks(running)
    assert after[("ok", "valid")] - before[("ok", "valid")] >= 1
    assert after[("denied", "missing")] - before[("denied", "missing")] >= 1
    # The public /metrics/ is Traefik's own; the counters are not served to clients.
    assert "gateway_token_checks_total" not in gateway.get("/metrics/").text
