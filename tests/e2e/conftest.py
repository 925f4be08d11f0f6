"""The whole system as real processes (Traefik included), once on SQLite and once on PostgreSQL.

Tests talk to the gateway URL only. The system is started by scripts/system.py (the launcher of
``make run``) once per backend and test session; tests that break a process put it back.
The auth service signs with a key the tests hand it (``JWT_PRIVATE_KEY``, as an operator would),
so a test can mint an expired token or one for another tenant with the real key.
"""

import secrets
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from common.pytest_plugin import create_postgres_database, drop_postgres_database, require_postgres
from common.testing import TestSigner

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import system as launcher

PASSWORD = "Sturdy-Molar-Crown-42"
SYSTEM_ENV = {
    # Every test comes from 127.0.0.1: the per-address limits would throttle the suite itself.
    "GATEWAY_AUTH_RATE_AVERAGE": "10000",
    "GATEWAY_AUTH_RATE_BURST": "10000",
    "LOGIN_FAILURES_PER_ADDRESS": "10000",
    "REGISTRATIONS_PER_ADDRESS": "10000",
    # A deleted tenant's tokens must stop working within this many seconds.
    "TENANT_CACHE_SECONDS": "2",
    # Cheap Argon2: the suite registers and logs in many users (production keeps the default).
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_COST": "1024",
    "ARGON2_PARALLELISM": "1",
    # A hung service answers 504 after this long (the default is 30 s).
    "GATEWAY_UPSTREAM_TIMEOUT": "3s",
    "LOG_LEVEL": "WARNING",
}


@dataclass
class RunningSystem:
    """The processes, the gateway URL, the superuser, and the auth signing key."""

    processes: launcher.System
    backend: str
    admin_username: str
    admin_password: str
    signer: TestSigner
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = self.processes.gateway_url

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=15, **kwargs)


@contextmanager
def started_system(
    backend: str, base: Path, env_overrides: dict[str, str] | None = None
) -> Iterator[RunningSystem]:
    """A whole system on ``backend`` under ``base`` (with SYSTEM_ENV and ``env_overrides``),
    stopped, and its PostgreSQL databases dropped, on exit."""
    env = {**SYSTEM_ENV, **(env_overrides or {})}
    databases: list[str] = []
    if backend == "postgresql":
        require_postgres()
        for service in ("auth", "clinic", "tenants"):
            databases.append(create_postgres_database(f"e2e_{service}"))
            env[f"{service.upper()}_DATABASE_URL"] = databases[-1]
    signer = TestSigner()
    admin_username = f"root-{uuid.uuid4().hex[:6]}"
    admin_password = secrets.token_urlsafe(16)
    env.update(
        {
            "JWT_PRIVATE_KEY": signer.private_pem.decode(),
            "DENTIAPRO_ADMIN_USERNAME": admin_username,
            "DENTIAPRO_ADMIN_PASSWORD": admin_password,
        }
    )
    processes = launcher.System(
        ports=launcher.Ports.free(), data_dir=base / "data", env=env, log_dir=base / "logs"
    )
    try:
        processes.start(timeout=180)
        # Auth names its key by thumbprint: mint with the kid it publishes.
        jwks = httpx.get(f"{processes.gateway_url}/api/auth/jwks/", timeout=10).json()
        signer.kid = jwks["keys"][0]["kid"]
        yield RunningSystem(processes, backend, admin_username, admin_password, signer)
    finally:
        processes.stop()
        for url in databases:
            drop_postgres_database(url)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSystem]:
    backend: str = request.param
    with started_system(backend, tmp_path_factory.mktemp(f"e2e-{backend}")) as system:
        yield system


@pytest.fixture
def gateway(running: RunningSystem) -> Iterator[httpx.Client]:
    """An HTTP client on the gateway URL."""
    with running.client() as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class Api:
    """The few calls most tests make, through the gateway."""

    password = PASSWORD

    def __init__(self, client: httpx.Client, running: RunningSystem) -> None:
        self.client = client
        self.running = running

    def login(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        response = self.client.post(
            "/api/auth/login/", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        tokens: dict[str, str] = response.json()
        return tokens

    def bearer(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.login(username, password)['access']}"}

    def superuser(self) -> dict[str, str]:
        return self.bearer(self.running.admin_username, self.running.admin_password)

    def register(
        self,
        username: str,
        headers: dict[str, str] | None = None,
        invitation: str | None = None,
    ) -> httpx.Response:
        body = {"username": username, "password": PASSWORD, "email": f"{username}@example.com"}
        if invitation is not None:
            body["invitation"] = invitation
        return self.client.post("/api/auth/register/", json=body, headers=headers or {})

    def invite(
        self,
        username: str,
        tenant: dict[str, Any],
        role: str = "admin",
        headers: dict[str, str] | None = None,
    ) -> str:
        """An invitation of ``username``'s email into ``tenant`` (by the superuser unless
        ``headers`` say otherwise); its token."""
        response = self.client.post(
            "/api/auth/invitations/",
            json={
                "email": f"{username}@example.com",
                "role": role,
                "tenant": tenant["schema_name"],
            },
            headers=headers or self.superuser(),
        )
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    def create_tenant(self) -> dict[str, Any]:
        schema = unique("t")
        response = self.client.post(
            "/api/tenants/",
            json={
                "name": f"Practice {schema}",
                "schema_name": schema,
                "domain_url": f"{schema}.localhost",
            },
            headers=self.superuser(),
        )
        assert response.status_code == 201, response.text
        tenant: dict[str, Any] = response.json()
        return tenant

    def tenant_admin(self, tenant: dict[str, Any]) -> tuple[str, dict[str, str]]:
        """The tenant's admin, invited by the superuser (as a practice is onboarded); logs in."""
        username = unique("admin")
        response = self.register(username, invitation=self.invite(username, tenant))
        assert response.status_code == 201, response.text
        return username, self.bearer(username)


@pytest.fixture
def api(gateway: httpx.Client, running: RunningSystem) -> Api:
    return Api(gateway, running)


def wait_until(condition: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


@pytest.fixture
def eventually() -> Any:
    """``eventually(condition, timeout, message)``: poll until ``condition()`` is true."""
    return wait_until


@pytest.fixture(scope="module")
def own_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """The calls of ``Api`` on a system of the test module's own, on PostgreSQL: for tests that
    delete or rename what other tests rely on. The module's ``SYSTEM_OVERRIDES`` (a dict) add
    to the system's environment."""
    overrides: dict[str, str] = getattr(request.module, "SYSTEM_OVERRIDES", {})
    base = tmp_path_factory.mktemp("own")
    with started_system("postgresql", base, overrides) as system, system.client() as client:
        yield Api(client, system)
