"""Fixtures of the edge's tests: real HTTP against the edge app, a real tenants service.

The tenants service runs as a process (started by scripts/system.py, the launcher ``make run``
uses), on its own SQLite file; it verifies tokens with the JWKS of the tests' signing key,
served over HTTP in place of auth's ``/api/auth/jwks/``.
"""

import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from common.testing import JwksServer, TestSigner, serve
from edge.main import create_app
from edge.settings import EdgeSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import system

EdgeFactory = Callable[..., AbstractContextManager[str]]


# The shared secret of /internal/ between the edge under test and the tenants service.
INTERNAL_TOKEN = secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def internal_token() -> str:
    return INTERNAL_TOKEN


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
def make_edge(signer: TestSigner, tenants_url: str, auth_url: str) -> EdgeFactory:
    """``with make_edge(**settings) as url``: an edge app on uvicorn; the tests' signer's keys
    unless ``real_jwks=True`` (then fetched from ``auth_url`` over HTTP, as in production)."""

    def make(*, real_jwks: bool = False, **overrides: Any) -> AbstractContextManager[str]:
        values: dict[str, Any] = {
            "auth_url": auth_url,
            "tenants_url": tenants_url,
            "clinic_url": tenants_url,
            "tenant_cache_seconds": 30.0,
            "internal_token": INTERNAL_TOKEN,
            **overrides,
        }
        settings = EdgeSettings(**values)
        verifier = None if real_jwks else signer.verifier()
        return serve(create_app(settings, token_verifier=verifier))

    return make


def _wait_for_keys(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        checks = httpx.get(f"{url}/health/", timeout=5).json()["checks"]
        if checks["jwks"]["status"] == "pass":
            return
        time.sleep(0.05)
    raise AssertionError("edge did not load its signing keys")


@pytest.fixture(scope="session")
def wait_for_keys() -> Callable[[str], None]:
    """The edge loads its keys in the background at start-up: ``wait_for_keys(edge_url)``."""
    return _wait_for_keys


@pytest.fixture(scope="session")
def edge_url(make_edge: EdgeFactory) -> Iterator[str]:
    with make_edge() as url:
        _wait_for_keys(url)
        yield url
