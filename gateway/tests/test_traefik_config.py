"""The committed Traefik configuration, loaded by the real Traefik binary.

Traefik runs on free ports with the files in gateway/traefik/ (rendered by scripts/system.py,
as ``make run`` does), its token check plugin included. Behind it: the edge, a real tenants
service, the tests' JWKS server as auth, and for clinic a port where nothing listens.
"""

import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml
from clinic.main import create_app as create_clinic_app
from clinic.settings import ClinicSettings
from common.testing import TestSigner, free_port, serve
from prometheus_client.parser import text_string_to_metric_families

EXPECTED_ROUTERS = {
    "auth-public",
    "auth-protected",
    "clinic",
    "clinic-write",
    "tenants",
    "tenants-write",
    "health",
    "api-docs",
    "metrics",
    "not-found",
    "token-check-metrics",
}
EXPECTED_MIDDLEWARES = {
    "protected",
    "protected-body",
    "auth-public",
    "auth-protected",
    "verify-token",
    "gateway-health",
    "token-check-metrics",
    "body-limit",
    "auth-rate-limit",
    "gateway-errors",
    "auth-errors",
    "not-found",
    "api-docs",
}
EXPECTED_SERVICES = {"auth", "clinic", "tenants", "edge"}
TWO_MIB = b"x" * (2 * 1024 * 1024)


class Gateway:
    def __init__(self, processes: Any) -> None:
        self.processes = processes
        self.url: str = processes.gateway_url
        self.api: str = processes.traefik_api_url

    def file_objects(self, kind: str) -> dict[str, dict[str, Any]]:
        """Routers, middlewares or services of the file provider, as Traefik's API reports them."""
        entries = httpx.get(f"{self.api}/api/http/{kind}", params={"per_page": 100}, timeout=5)
        return {
            entry["name"].removesuffix("@file"): entry
            for entry in entries.json()
            if entry["name"].endswith("@file")
        }


@pytest.fixture(scope="module")
def start_gateway(
    tmp_path_factory: pytest.TempPathFactory,
    launcher: ModuleType,
    edge_url: str,
    tenants_url: str,
    auth_url: str,
    internal_token: str,
) -> Iterator[Callable[..., Gateway]]:
    """``start_gateway(**env)``: a Traefik process with the committed configuration."""
    started: list[Any] = []

    def start(**extra_env: str) -> Gateway:
        base = tmp_path_factory.mktemp("traefik")
        env = {
            "AUTH_URL": auth_url,
            "CLINIC_URL": f"http://127.0.0.1:{free_port()}",
            "TENANTS_URL": tenants_url,
            "EDGE_URL": edge_url,
            "GATEWAY_AUTH_RATE_AVERAGE": "1000",
            "GATEWAY_AUTH_RATE_BURST": "1000",
            # The tenants process's secret: the token check asks its /internal/ paths.
            "DENTIAPRO_INTERNAL_TOKEN": internal_token,
            **extra_env,
        }
        processes = launcher.System(
            ports=launcher.Ports.free(), data_dir=base, env=env, log_dir=base / "logs"
        )
        started.append(processes)
        processes.start_process("traefik")
        gateway = Gateway(processes)
        deadline = time.monotonic() + 30
        while True:
            try:
                if set(gateway.file_objects("routers")) >= EXPECTED_ROUTERS:
                    break
            except (httpx.HTTPError, ValueError):  # not listening, or API not up yet
                pass
            assert time.monotonic() < deadline, processes.log_tail("traefik")
            time.sleep(0.1)
        # The token check fetches auth's keys in the background as Traefik starts.
        processes.wait_until_keys_loaded(30)
        return gateway

    yield start
    for processes in started:
        processes.stop()


@pytest.fixture(scope="module")
def gateway(start_gateway: Callable[..., Gateway], make_edge: Any) -> Iterator[Gateway]:
    """Traefik with an edge of its own; clinic is down for both."""
    clinic_down = f"http://127.0.0.1:{free_port()}"
    with make_edge(clinic_url=clinic_down) as edge_url:
        yield start_gateway(CLINIC_URL=clinic_down, EDGE_URL=edge_url)


def test_every_router_is_enabled_without_errors(gateway: Gateway) -> None:
    routers = gateway.file_objects("routers")
    assert set(routers) >= EXPECTED_ROUTERS
    for name in EXPECTED_ROUTERS:
        assert routers[name]["status"] == "enabled", routers[name]
        assert not routers[name].get("error"), routers[name]
        # Only the token check's counters are on the internal entry point, never published.
        expected = ["internal"] if name == "token-check-metrics" else ["web"]
        assert routers[name]["entryPoints"] == expected


def test_every_middleware_and_service_is_enabled_without_errors(gateway: Gateway) -> None:
    middlewares = gateway.file_objects("middlewares")
    services = gateway.file_objects("services")
    assert set(middlewares) >= EXPECTED_MIDDLEWARES
    assert set(services) >= EXPECTED_SERVICES
    for entry in [*middlewares.values(), *services.values()]:
        assert entry["status"] == "enabled", entry
        assert not entry.get("error"), entry


def test_protected_routers_check_the_token_in_traefik_before_anything_else(
    gateway: Gateway,
) -> None:
    routers = gateway.file_objects("routers")
    middlewares = gateway.file_objects("middlewares")
    for name in ("clinic", "clinic-write", "tenants", "tenants-write", "auth-protected"):
        (chain,) = routers[name]["middlewares"]
        steps = middlewares[chain.removesuffix("@file")]["chain"]["middlewares"]
        # Before any errors middleware, which would replace its 401/503 bodies; after the
        # rate limit on /api/auth/ (which answers before any work).
        first = 1 if name == "auth-protected" else 0
        assert steps[first].removesuffix("@file") == "verify-token", (name, steps)
    verify = middlewares["verify-token"]["plugin"]["tokencheck"]
    env = gateway.processes.env
    assert verify == {
        "mode": "verify",
        "authUrl": env["AUTH_URL"],
        "tenantsUrl": env["TENANTS_URL"],
        "issuer": "dentiapro-auth",
        "jwksRefetchInterval": "1",
        "tenantCacheSeconds": "30",
        "tenantsTimeout": "2",
    }
    assert routers["health"]["middlewares"] == ["gateway-health@file"]


def test_every_service_is_health_checked(gateway: Gateway) -> None:
    services = gateway.file_objects("services")
    for name in EXPECTED_SERVICES:
        check = services[name]["loadBalancer"].get("healthCheck", {})
        # The edge's own /health/ is the aggregate: Traefik checks its liveness instead.
        expected = "/health/live" if name == "edge" else "/health/"
        assert check.get("path") == expected, (name, check)


def test_traefik_does_not_phone_home(launcher: ModuleType) -> None:
    static = yaml.safe_load((launcher.TRAEFIK_DIR / "traefik.yml").read_text())
    assert static["global"] == {"checkNewVersion": False, "sendAnonymousUsage": False}


def test_service_urls_come_from_the_environment(gateway: Gateway, tenants_url: str) -> None:
    tenants = gateway.file_objects("services")["tenants"]
    assert tenants["loadBalancer"]["servers"] == [{"url": tenants_url}]


def test_protected_route_reaches_the_service_with_a_valid_token(
    gateway: Gateway, superuser_headers: dict[str, str]
) -> None:
    response = httpx.get(f"{gateway.url}/api/tenants/", headers=superuser_headers, timeout=10)
    assert response.status_code == 200, response.text
    assert "public" in {tenant["schema_name"] for tenant in response.json()["results"]}


def test_protected_route_without_token_gets_the_token_checks_401(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/api/tenants/", timeout=10)
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_protected_route_of_a_service_that_is_down_still_gets_the_json_error_page(
    gateway: Gateway, signer: TestSigner
) -> None:
    """The token check runs first, then the errors middleware still wraps the service."""
    response = httpx.get(
        f"{gateway.url}/api/patients/", headers={**signer.auth_header(), "X-Request-ID": "r-1"}
    )
    assert response.status_code in {502, 503}
    assert set(response.json()) == {"detail"}


def test_services_see_the_clients_host_and_traefiks_scheme(
    gateway: Gateway, superuser_headers: dict[str, str]
) -> None:
    headers = {**superuser_headers, "Host": "clinic-b.localhost", "X-Forwarded-Proto": "https"}
    response = httpx.get(
        f"{gateway.url}/api/tenants/", params={"page_size": 1}, headers=headers, timeout=10
    )
    assert response.status_code == 200
    next_page = response.json()["next"]
    if next_page is not None:  # at least two tenants exist when other tests ran first
        # Host as the client sent it; the client's X-Forwarded-Proto is not trusted.
        assert next_page.startswith("http://clinic-b.localhost/api/tenants/")


@pytest.mark.parametrize(
    "path",
    [
        "/api/patientsXYZ",
        "/api/tenantsX/",
        "/internal/tenants/resolve/?schema_name=public",
        "/",
        "/api/docsX/",
        "/api/openapi.jsonX",
        "/api/openapi.json/x",
        "/gateway/docs/",  # the edge's own path: only its /api/ names are routed
    ],
)
def test_unrouted_paths_are_a_json_404(gateway: Gateway, path: str) -> None:
    response = httpx.get(f"{gateway.url}{path}", timeout=10)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_unrouted_post_is_a_json_404(gateway: Gateway) -> None:
    response = httpx.post(f"{gateway.url}/api/patientsXYZ/", content=b"text", timeout=10)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize("path", ["/api/tenants/", "/api/auth/login/"])
def test_body_over_one_mib_is_a_json_413(
    gateway: Gateway, superuser_headers: dict[str, str], path: str
) -> None:
    headers = {**superuser_headers, "Content-Type": "application/json"}
    response = httpx.post(f"{gateway.url}{path}", content=TWO_MIB, headers=headers, timeout=30)
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large (limit 1 MiB)."}


def test_service_down_is_a_json_5xx(gateway: Gateway, signer: TestSigner) -> None:
    response = httpx.get(f"{gateway.url}/api/patients/", headers=signer.auth_header(), timeout=10)
    assert response.status_code in {502, 503}
    assert response.json()["detail"] in {
        "Bad gateway: the service is unreachable.",
        "Service unavailable, try again shortly.",
    }


@pytest.mark.parametrize("path", ["/api/docs/", "/api/docs"])
def test_docs_page_is_public_with_the_edges_own_headers(gateway: Gateway, path: str) -> None:
    response = httpx.get(f"{gateway.url}{path}", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"  # as every /api/ response
    assert "default-src 'none'" in response.headers["content-security-policy"]
    (bundle,) = (u for u in response.text.split('"') if u.endswith("/swagger-ui-bundle.js"))
    asset = httpx.get(f"{gateway.url}{bundle}", timeout=10)
    assert asset.status_code == 200
    assert asset.headers["cache-control"] == "no-store"
    assert asset.headers["content-encoding"] == "gzip"


@pytest.mark.parametrize("path", ["/api/openapi.json", "/api/openapi.json/"])
def test_openapi_document_is_public_and_the_edges_503_names_a_missing_service(
    gateway: Gateway, path: str
) -> None:
    """Clinic is down for this gateway's edge (and auth is a JWKS stand-in without a
    document): the edge's 503 reaches the client as written (no errors middleware on the
    route), and no token was asked for."""
    response = httpx.get(f"{gateway.url}{path}", timeout=10)
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert detail.startswith("API description unavailable: no document from auth: HTTP")
    assert "; clinic: " in detail
    assert response.headers["retry-after"] == "5"


def test_health_is_the_edges_aggregate_naming_the_failing_service(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/health/", timeout=10)
    assert response.status_code == 503
    body = response.json()
    assert body["services"]["clinic"]["status"] == "fail"
    assert body["services"]["tenants"]["status"] == "pass"


def test_client_request_id_is_echoed(gateway: Gateway, superuser_headers: dict[str, str]) -> None:
    headers = {**superuser_headers, "X-Request-ID": "trace-me-123"}
    response = httpx.get(f"{gateway.url}/api/tenants/", headers=headers, timeout=10)
    assert response.headers["x-request-id"] == "trace-me-123"
    missing = httpx.get(f"{gateway.url}/api/nothing/", headers=headers, timeout=10)
    assert missing.headers["x-request-id"] == "trace-me-123"


@pytest.mark.parametrize("path", ["/metrics", "/metrics/"])
def test_metrics_are_traefiks_prometheus_text_with_router_labels(
    gateway: Gateway, superuser_headers: dict[str, str], path: str
) -> None:
    httpx.get(f"{gateway.url}/api/tenants/", headers=superuser_headers, timeout=10)
    response = httpx.get(f"{gateway.url}{path}", timeout=10)
    assert response.status_code == 200
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    routers = {
        sample.labels.get("router") for sample in families["traefik_router_requests"].samples
    }
    assert "tenants@file" in routers
    buckets = {
        sample.labels["le"]
        for sample in families["traefik_router_request_duration_seconds"].samples
        if "le" in sample.labels
    }
    assert "0.001" in buckets


def test_traefik_api_is_not_served_on_the_gateway(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/api/http/routers", timeout=10)
    assert response.status_code == 404


def test_auth_paths_are_rate_limited_per_client(start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway(GATEWAY_AUTH_RATE_AVERAGE="1", GATEWAY_AUTH_RATE_BURST="3")
    statuses = [httpx.get(f"{gateway.url}/api/auth/jwks/", timeout=10) for _ in range(8)]
    assert statuses[0].status_code == 200
    throttled = [response for response in statuses if response.status_code == 429]
    assert throttled, [response.status_code for response in statuses]
    assert int(throttled[0].headers["retry-after"]) >= 1


def test_each_listed_replica_is_checked_and_an_unhealthy_one_dropped(
    start_gateway: Callable[..., Gateway],
    signer: TestSigner,
    edge_url: str,
    tmp_path: Any,
) -> None:
    """CLINIC_URLS lists replicas (compose's --scale): Traefik health-checks each one and
    sends nothing to one whose /health/ fails (here: its database is unreachable), where a
    single DNS name would have been one server, checked as one."""
    healthy = ClinicSettings(database_url=f"sqlite:///{tmp_path / 'a.sqlite3'}", data_dir=tmp_path)
    no_database = ClinicSettings(
        database_url=f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/gone",
        data_dir=tmp_path,
    )
    with (
        serve(create_clinic_app(healthy, token_verifier=signer.verifier())) as good,
        serve(create_clinic_app(no_database, token_verifier=signer.verifier())) as bad,
    ):
        gateway = start_gateway(CLINIC_URLS=f"{good}, {bad}", EDGE_URL=edge_url)
        deadline = time.monotonic() + 30
        while True:
            servers = gateway.file_objects("services")["clinic"].get("serverStatus", {})
            if servers == {good: "UP", bad: "DOWN"}:
                break
            assert time.monotonic() < deadline, servers
            time.sleep(0.2)
        headers = signer.auth_header(tenant="public")
        statuses = [
            httpx.get(f"{gateway.url}/api/patients/", headers=headers, timeout=10).status_code
            for _ in range(20)
        ]
        assert statuses == [200] * 20
