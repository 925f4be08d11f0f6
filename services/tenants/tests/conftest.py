"""Fixtures: one tenants service per backend (real HTTP, real SQLite and PostgreSQL).

The shared server lives for a test module; tests stay independent by giving every tenant
they create a unique schema_name/domain and by filtering lists with ``?search=`` on it.
"""

import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from common.db import create_db_engine
from common.pytest_plugin import (
    BACKENDS,
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)
from common.testing import TestSigner, serve
from sqlmodel import Session
from tenants.main import create_app
from tenants.models import Tenant
from tenants.settings import TenantsSettings

TenantFactory = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def signer() -> TestSigner:
    return TestSigner()


@pytest.fixture(scope="session")
def internal_token() -> str:
    """The shared secret of /internal/ (DENTIAPRO_INTERNAL_TOKEN) for every app under test."""
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def internal_headers(internal_token: str) -> dict[str, str]:
    return {"X-Internal-Token": internal_token}


@pytest.fixture(scope="session")
def superuser_headers(signer: TestSigner) -> dict[str, str]:
    return signer.auth_header(user_id=1, username="root", is_superuser=True, lifetime=3600)


@pytest.fixture(scope="session")
def user_headers(signer: TestSigner) -> dict[str, str]:
    return signer.auth_header(user_id=2, username="dentist", is_superuser=False, lifetime=3600)


@pytest.fixture(scope="module", params=BACKENDS)
def server_backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        require_postgres()
    return str(request.param)


@pytest.fixture(scope="module")
def module_database_url(
    server_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if server_backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('tenants') / 'tenants.sqlite3'}"
        return
    url = create_postgres_database("tenants")
    yield url
    drop_postgres_database(url)


@pytest.fixture
def make_settings(tmp_path: Path, internal_token: str) -> Callable[..., TenantsSettings]:
    """Settings for an app under test; keyword arguments override fields by name."""

    def make(**overrides: Any) -> TenantsSettings:
        values: dict[str, Any] = {
            "data_dir": tmp_path,
            "default_tenant": "public",
            "internal_token": internal_token,
        }
        values.update(overrides)
        return TenantsSettings(**values)

    return make


@pytest.fixture(scope="module")
def base_url(
    module_database_url: str,
    signer: TestSigner,
    internal_token: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    settings = TenantsSettings(
        database_url=module_database_url,
        data_dir=tmp_path_factory.mktemp("data"),
        default_tenant="public",
        default_tenant_name="Default practice",
        internal_token=internal_token,
    )
    with serve(create_app(settings, token_verifier=signer.verifier())) as url:
        yield url


@pytest.fixture
def api(base_url: str, superuser_headers: dict[str, str]) -> Iterator[httpx.Client]:
    """A superuser's client."""
    with httpx.Client(base_url=base_url, headers=superuser_headers, timeout=30) as client:
        yield client


@pytest.fixture
def anonymous(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


@pytest.fixture
def internal(base_url: str, internal_headers: dict[str, str]) -> Iterator[httpx.Client]:
    """A client of /internal/ holding the shared secret (as auth and the gateway do)."""
    with httpx.Client(base_url=base_url, headers=internal_headers, timeout=30) as client:
        yield client


@pytest.fixture
def unique() -> str:
    """A fresh lower-case token to build names no other test uses."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def new_tenant(api: httpx.Client, unique: str) -> TenantFactory:
    """Create a tenant through the API (unique schema and domain unless given); return its JSON."""
    counter = iter(range(1_000_000))

    def create(**fields: Any) -> dict[str, Any]:
        n = next(counter)
        body = {
            "name": f"Practice {unique} {n}",
            "schema_name": f"t_{unique}_{n}",
            "domain_url": f"p{n}-{unique}.example.com",
            **fields,
        }
        response = api.post("/api/tenants/", json=body)
        assert response.status_code == 201, response.text
        tenant: dict[str, Any] = response.json()
        return tenant

    return create


@pytest.fixture
def insert_tenants(module_database_url: str, unique: str) -> Callable[[int], None]:
    """Insert ``n`` live tenants straight into the shared database (fast bulk set-up)."""

    def insert(n: int) -> None:
        engine = create_db_engine(module_database_url)
        try:
            with Session(engine) as session:
                for i in range(n):
                    session.add(
                        Tenant(
                            name=f"Bulk {unique} {i:04d}",
                            schema_name=f"bulk_{unique}_{i}",
                            domain_url=f"b{i}-{unique}.bulk.test",
                        )
                    )
                session.commit()
        finally:
            engine.dispose()

    return insert
