"""Fixtures of the gateway's tests: the edge over real HTTP, and the real Traefik with the token
check plugin in front of stand-ins for auth and tenants.

The stand-ins are small apps on real sockets (the tests control what they answer and count what
they are asked): auth's JWKS with the tests' signing keys, and the tenants service's internal
status endpoints, which also echo any ``/api/`` request back with the headers it arrived with,
so a test sees what a service behind the gateway sees. A real tenants process (started by
scripts/system.py, the launcher ``make run`` uses) serves the Traefik configuration tests.
"""

import secrets
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from common.testing import JwksServer, TestSigner, free_port, serve
from edge.main import create_app
from edge.settings import EdgeSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import system
from stand_ins import (
    AuthStandIn,
    GatewayFactory,
    TenantsStandIn,
    TokenGateway,
    dynamic_config,
    serving,
    wait_until_routed,
)

EdgeFactory = Callable[..., AbstractContextManager[str]]

# The shared secret of /internal/ (X-Internal-Token) between the gateway under test and the
# tenants service: each System would otherwise have one of its own.
INTERNAL_TOKEN = secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def internal_token() -> str:
    return INTERNAL_TOKEN


@pytest.fixture
def hung_service_url() -> Iterator[str]:
    """A port that accepts connections and never answers (a stopped process behaves so)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="session")
def launcher() -> ModuleType:
    """scripts/system.py: the process launcher of ``make run`` and the end-to-end tests."""
    return system


@pytest.fixture(scope="session")
def signer() -> TestSigner:
    return TestSigner()


@pytest.fixture(scope="session")
def jwks_server(signer: TestSigner) -> Iterator[tuple[JwksServer, str]]:
    server = JwksServer(signer)
    with serve(server.app) as url:
        yield server, url


@pytest.fixture(scope="session")
def auth_url(jwks_server: tuple[JwksServer, str]) -> str:
    return jwks_server[1]


@pytest.fixture(scope="session")
def tenants_url(tmp_path_factory: pytest.TempPathFactory, auth_url: str) -> Iterator[str]:
    """A real tenants service process; its default tenant is ``public``."""
    base = tmp_path_factory.mktemp("tenants")
    processes = system.System(
        ports=system.Ports.free(),
        data_dir=base / "data",
        env={
            "AUTH_URL": auth_url,
            "LOG_LEVEL": "WARNING",
            "DENTIAPRO_INTERNAL_TOKEN": INTERNAL_TOKEN,
        },
        log_dir=base / "logs",
    )
    try:
        processes.start_process("tenants")
        processes.wait_until_service_healthy("tenants", timeout=60)
        yield processes.url("tenants")
    finally:
        processes.stop()


@pytest.fixture
def superuser_headers(signer: TestSigner) -> dict[str, str]:
    return signer.auth_header(user_id=1, username="root", is_superuser=True, tenant="public")


@pytest.fixture(scope="session")
def make_edge(tenants_url: str, auth_url: str) -> EdgeFactory:
    """``with make_edge(**settings) as url``: an edge app on uvicorn; its upstreams are the
    tests' auth stand-in and the real tenants service unless overridden."""

    def make(**overrides: Any) -> AbstractContextManager[str]:
        values: dict[str, Any] = {
            "auth_url": auth_url,
            "tenants_url": tenants_url,
            "clinic_url": tenants_url,
            **overrides,
        }
        return serve(create_app(EdgeSettings(**values)))

    return make


@pytest.fixture(scope="session")
def edge_url(make_edge: EdgeFactory) -> Iterator[str]:
    with make_edge() as url:
        yield url


@pytest.fixture(scope="session")
def start_token_gateway(
    tmp_path_factory: pytest.TempPathFactory, signer: TestSigner
) -> GatewayFactory:
    """``with start_token_gateway(env=..., auth=..., tenants=...) as gateway``: Traefik with the
    plugin in front of the stand-ins and a real edge; it waits until the routes are loaded
    (and the signing keys, unless ``wait_for_keys=False``)."""

    @contextmanager
    def start(
        *,
        env: dict[str, str] | None = None,
        auth: AuthStandIn | None = None,
        tenants: TenantsStandIn | None = None,
        auth_port: int | None = None,
        serve_auth: bool = True,
        wait_for_keys: bool = True,
        plugin_settings: dict[str, Any] | None = None,
    ) -> Iterator[TokenGateway]:
        auth = auth or AuthStandIn(signer)
        tenants = tenants or TenantsStandIn()
        auth_port = auth_port or free_port()
        auth_url = f"http://127.0.0.1:{auth_port}"
        base = tmp_path_factory.mktemp("token-gateway")
        dynamic = system.TRAEFIK_DIR / "dynamic"
        if plugin_settings is not None:  # a copy of its own, which a test may change
            dynamic = dynamic_config(base / "dynamic", **plugin_settings)
        with serve(tenants.app) as tenants_url, serving(serve_auth, auth.app, auth_port):
            edge_settings = EdgeSettings(
                auth_url=auth_url, tenants_url=tenants_url, clinic_url=tenants_url
            )
            with serve(create_app(edge_settings)) as edge_url:
                processes = system.System(
                    ports=system.Ports.free(),
                    data_dir=base,
                    env={
                        "AUTH_URL": auth_url,
                        "TENANTS_URL": tenants_url,
                        "CLINIC_URL": tenants_url,
                        "EDGE_URL": edge_url,
                        "GATEWAY_AUTH_RATE_AVERAGE": "1000",
                        "GATEWAY_AUTH_RATE_BURST": "1000",
                        "DENTIAPRO_INTERNAL_TOKEN": INTERNAL_TOKEN,
                        **(env or {}),
                    },
                    log_dir=base / "logs",
                    traefik_dynamic_dir=dynamic,
                )
                try:
                    processes.start_process("traefik")
                    wait_until_routed(processes, ignore=set() if serve_auth else {"auth"})
                    gateway = TokenGateway(processes, auth, tenants, auth_url)
                    if wait_for_keys:
                        gateway.wait_for_keys()
                    yield gateway
                finally:
                    processes.stop()

    return start


@pytest.fixture(scope="module")
def token_gateway(start_token_gateway: GatewayFactory) -> Iterator[TokenGateway]:
    """A gateway shared by a module's tests that change nothing in it."""
    with start_token_gateway() as gateway:
        yield gateway
