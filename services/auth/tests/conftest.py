"""Fixtures of the auth tests: real servers over real HTTP, on SQLite and PostgreSQL.

Every test gets a fresh auth database on the ``backend`` it runs on. ``start_auth`` serves an
auth app (settings overridable per test) and returns an httpx client on it; ``tenants``
starts the real tenants service as a subprocess wired to that auth server.
"""

import importlib.util
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from auth.db import create_engine, upgrade
from auth.main import create_app
from auth.models import Role, User
from auth.settings import AuthSettings
from common.db import utcnow
from common.pytest_plugin import DatabaseUrlFactory
from common.testing import free_port, serve
from sqlmodel import Session

ADMIN_USERNAME = "platform-root"
# What the tests' tenants service expects in X-Internal-Token (DENTIAPRO_INTERNAL_TOKEN).
INTERNAL_TOKEN = "auth-tests-internal-token"
ADMIN_PASSWORD = "root-test-password-1"
GOOD_PASSWORD = "correct-Horse-battery-9"
# Cheap Argon2 parameters keep the suite fast; one test measures the real cost.
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost": 1024, "argon2_parallelism": 1}

StartAuth = Callable[..., httpx.Client]


@pytest.fixture
def password() -> str:
    """A password every rule accepts; test users have it unless a test says otherwise."""
    return GOOD_PASSWORD


@pytest.fixture
def superuser() -> tuple[str, str]:
    """Username and password of the platform superuser every test server ensures."""
    return ADMIN_USERNAME, ADMIN_PASSWORD


@pytest.fixture
def auth_database_url(database_url: DatabaseUrlFactory) -> str:
    """One auth database per test: every server a test starts shares it (restarts, replicas)."""
    return database_url("auth")


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: a tenants service that is down."""
    return free_port()


@pytest.fixture
def auth_settings(
    auth_database_url: str, tmp_path: Path, closed_port: int
) -> Callable[..., AuthSettings]:
    def make(**overrides: Any) -> AuthSettings:
        values: dict[str, Any] = {
            "database_url": auth_database_url,
            "data_dir": tmp_path,
            "admin_username": ADMIN_USERNAME,
            "admin_password": ADMIN_PASSWORD,
            "tenants_url": f"http://127.0.0.1:{closed_port}",
            "tenants_timeout": 1.0,
            # Every test registers from 127.0.0.1; the throttle's own tests lower it.
            "registrations_per_address": 10_000,
            "log_level": "WARNING",
            **FAST_ARGON2,
        }
        values.update(overrides)
        return AuthSettings(**values)

    return make


@pytest.fixture
def start_auth(auth_settings: Callable[..., AuthSettings]) -> Iterator[StartAuth]:
    """Start an auth server with the test settings (plus overrides); a client on it."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> httpx.Client:
            url = stack.enter_context(serve(create_app(auth_settings(**overrides))))
            return stack.enter_context(httpx.Client(base_url=url, timeout=15))

        yield start


@pytest.fixture
def client(start_auth: StartAuth) -> httpx.Client:
    """A client on an auth server with the default test settings."""
    return start_auth()


@pytest.fixture
def db(auth_database_url: str, auth_settings: Callable[..., AuthSettings]) -> Iterator[Session]:
    """A session on the test's auth database, to arrange state the API cannot reach."""
    engine = create_engine(auth_settings())
    upgrade(engine)
    with Session(engine, expire_on_commit=False) as session:
        yield session
    engine.dispose()


@pytest.fixture
def make_user(db: Session) -> Callable[..., User]:
    """Insert a user directly: any tenant, no tenants service needed."""
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

    def make(
        username: str,
        *,
        tenant: str = "public",
        role: Role = Role.STAFF,
        is_active: bool = True,
        password: str = GOOD_PASSWORD,
    ) -> User:
        now = utcnow()
        user = User(
            username=username,
            username_key=username.casefold(),
            email=f"{username}@example.com",
            tenant=tenant,
            role=role,
            is_active=is_active,
            password_hash=hasher.hash(password),
            date_joined=now,
            updated_at=now,
        )
        db.add(user)
        db.commit()
        db.refresh(user)
        return user

    return make


@pytest.fixture
def register() -> Callable[..., httpx.Response]:
    """POST a registration; ``tenant`` goes into X-Tenant (None: no header)."""

    def post(
        client: httpx.Client,
        username: str,
        *,
        password: str = GOOD_PASSWORD,
        email: str | None = None,
        tenant: str | None = "public",
        headers: dict[str, str] | None = None,
        invitation: str | None = None,
    ) -> httpx.Response:
        all_headers = dict(headers or {})
        if tenant is not None:
            all_headers["X-Tenant"] = tenant
        body = {
            "username": username,
            "password": password,
            "email": email or f"{username}@example.com",
        }
        if invitation is not None:
            body["invitation"] = invitation
        return client.post("/api/auth/register/", json=body, headers=all_headers)

    return post


@pytest.fixture
def invite() -> Callable[..., str]:
    """Invite through the API as the platform superuser (or as ``headers`` say); the token."""

    def post(
        client: httpx.Client,
        email: str,
        *,
        tenant: str = "public",
        role: str = "staff",
        headers: dict[str, str] | None = None,
    ) -> str:
        if headers is None:
            tokens = client.post(
                "/api/auth/login/", json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}
            ).json()
            headers = bearer(tokens["access"])
        body = {"email": email, "role": role, "tenant": tenant}
        response = client.post("/api/auth/invitations/", json=body, headers=headers)
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    return post


@pytest.fixture
def join(
    register: Callable[..., httpx.Response], invite: Callable[..., str]
) -> Callable[..., httpx.Response]:
    """Register an active member of ``tenant`` with ``role``, invited by the superuser."""

    def post(
        client: httpx.Client, username: str, *, tenant: str = "public", role: str = "staff"
    ) -> httpx.Response:
        email = f"{username}@example.com"
        token = invite(client, email, tenant=tenant, role=role)
        response = register(client, username, email=email, tenant=None, invitation=token)
        assert response.status_code == 201, response.text
        return response

    return post


@pytest.fixture
def login() -> Callable[..., dict[str, str]]:
    """Log in and return the token pair (asserting success)."""

    def post(client: httpx.Client, username: str, password: str = GOOD_PASSWORD) -> dict[str, str]:
        response = client.post(
            "/api/auth/login/", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        tokens: dict[str, str] = response.json()
        return tokens

    return post


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth_header(login: Callable[..., dict[str, str]]) -> Callable[..., dict[str, str]]:
    def header(
        client: httpx.Client, username: str, password: str = GOOD_PASSWORD
    ) -> dict[str, str]:
        return bearer(login(client, username, password)["access"])

    return header


# ---- the real tenants service -------------------------------------------------------------


@dataclass
class TenantsService:
    """A running tenants service and a superuser token it accepts."""

    url: str
    superuser: dict[str, str]
    process: subprocess.Popen[bytes]

    def create(self, prefix: str, domain_url: str | None = None) -> dict[str, Any]:
        """A new tenant; its schema_name is ``prefix`` plus a unique suffix."""
        schema_name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        body = {
            "name": f"Practice {schema_name}",
            "schema_name": schema_name,
            "domain_url": domain_url or f"{schema_name.replace('_', '-')}.example.test",
        }
        response = httpx.post(f"{self.url}/api/tenants/", json=body, headers=self.superuser)
        assert response.status_code == 201, response.text
        tenant: dict[str, Any] = response.json()
        return tenant

    def delete(self, tenant: dict[str, Any]) -> None:
        response = httpx.delete(f"{self.url}/api/tenants/{tenant['id']}/", headers=self.superuser)
        assert response.status_code == 204, response.text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Tenancy:
    """An auth server of the test wired to a tenants service."""

    auth: httpx.Client
    registry: TenantsService


def _tenants_service_missing() -> str | None:
    try:
        found = importlib.util.find_spec("tenants.main") is not None
    except ModuleNotFoundError:
        found = False
    return None if found else "the tenants service (package tenants, tenants.main) is not installed"


@contextmanager
def _run_tenants_service(directory: Path) -> Iterator[TenantsService]:
    """The tenants service as a subprocess, trusting the JWKS of an auth server of its own,
    whose superuser token creates and deletes tenants."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = AuthSettings(
        database_url=f"sqlite:///{directory / 'registry-auth.sqlite3'}",
        data_dir=directory,
        admin_username=ADMIN_USERNAME,
        admin_password=ADMIN_PASSWORD,
        tenants_url=url,
        log_level="WARNING",
        **FAST_ARGON2,
    )
    with serve(create_app(settings)) as auth_url:
        env = {
            **os.environ,
            "TENANTS_DATABASE_URL": f"sqlite:///{directory / 'tenants.sqlite3'}",
            "AUTH_URL": auth_url,
            "DENTIAPRO_DATA_DIR": str(directory),
            "DENTIAPRO_INTERNAL_TOKEN": INTERNAL_TOKEN,
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "uvicorn", "tenants.main:create_app", "--factory"]
        log_path = directory / "tenants.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        service = TenantsService(url, {}, process)
        try:
            deadline = time.monotonic() + 90  # generous: a loaded CI machine imports slowly
            while True:
                try:
                    if httpx.get(f"{url}/health/", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    output = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"the tenants service did not start:\n{output}")
                time.sleep(0.05)
            tokens = httpx.post(
                f"{auth_url}/api/auth/login/",
                json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD},
            ).json()
            service.superuser = bearer(tokens["access"])
            yield service
        finally:
            service.stop()


@pytest.fixture(scope="session")
def tenants_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TenantsService]:
    """One tenants service per test worker; tests create uniquely named tenants in it."""
    reason = _tenants_service_missing()
    if reason:
        pytest.skip(reason)
    with _run_tenants_service(tmp_path_factory.mktemp("tenants")) as service:
        yield service


@pytest.fixture
def tenants(start_auth: StartAuth, tenants_registry: TenantsService) -> Callable[..., Tenancy]:
    """Start an auth server that resolves tenants through the tenants service, presenting the
    internal token it expects (unless the test says otherwise)."""

    def start(**auth_overrides: Any) -> Tenancy:
        overrides = {"internal_token": INTERNAL_TOKEN, **auth_overrides}
        return Tenancy(start_auth(tenants_url=tenants_registry.url, **overrides), tenants_registry)

    return start
