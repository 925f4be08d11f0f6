"""Fixtures of the clinic tests: one real server per backend, a fresh tenant per test.

Tenants are isolated by construction (a schema or a file each), so most tests share one
server per backend and start from an empty tenant of their own: fast, and as fresh as a new
database. Tests that need their own database or server use ``backend``/``database_url``.
"""

import contextlib
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from clinic.main import create_app
from clinic.settings import ClinicSettings
from common.pytest_plugin import (
    BACKENDS,
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)
from common.testing import TestSigner, free_port, serve
from sqlalchemy.engine import make_url

Json = dict[str, Any]


@pytest.fixture(scope="session")
def signer() -> TestSigner:
    return TestSigner()


@pytest.fixture(scope="session", params=BACKENDS)
def shared_backend(request: pytest.FixtureRequest) -> str:
    """The backend of the shared server (session-scoped twin of ``backend``)."""
    if request.param == "postgresql":
        require_postgres()
    return str(request.param)


@pytest.fixture(scope="session")
def shared_database_url(
    shared_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if shared_backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('clinic') / 'clinic.sqlite3'}"
        return
    url = create_postgres_database("clinic")
    yield url
    drop_postgres_database(url)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, for the tests about PostgreSQL itself."""
    require_postgres()
    url = create_postgres_database("clinic")
    yield url
    drop_postgres_database(url)


@pytest.fixture(scope="session")
def make_settings(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], ClinicSettings]:
    def make(url: str) -> ClinicSettings:
        return ClinicSettings(database_url=url, data_dir=tmp_path_factory.mktemp("data"))

    return make


@pytest.fixture(scope="session")
def server(
    shared_database_url: str, signer: TestSigner, make_settings: Callable[[str], ClinicSettings]
) -> Iterator[str]:
    """Base URL of a clinic server shared by the tests of one backend."""
    app = create_app(make_settings(shared_database_url), token_verifier=signer.verifier())
    with serve(app) as base_url:
        yield base_url


def _new_tenant_name() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def new_tenant() -> Callable[[], str]:
    """Fresh schema names: a brand-new, empty tenant each call."""
    return _new_tenant_name


@pytest.fixture(scope="module")
def module_tenant() -> str:
    """One tenant for a test module: for tests that do not count what a tenant holds."""
    return _new_tenant_name()


@pytest.fixture(scope="session")
def transport() -> Iterator[httpx.HTTPTransport]:
    """One connection pool for every test client (a new client's TLS setup costs ~70 ms)."""
    with httpx.HTTPTransport() as shared:
        yield shared


@pytest.fixture(scope="session")
def client_for(
    server: str, signer: TestSigner, transport: httpx.HTTPTransport
) -> Callable[[str | None], httpx.Client]:
    """HTTP clients of the shared server, authenticated as a user of the given tenant (None:
    no token). They share the session's transport, so they are never closed one by one."""

    def make(tenant: str | None) -> httpx.Client:
        return httpx.Client(
            base_url=server,
            headers=signer.auth_header(tenant=tenant) if tenant is not None else {},
            timeout=30,
            transport=transport,
            trust_env=False,
        )

    return make


@pytest.fixture
def anonymous(client_for: Callable[[str | None], httpx.Client]) -> httpx.Client:
    """A client of the shared server without a token."""
    return client_for(None)


@pytest.fixture
def api(client_for: Callable[[str | None], httpx.Client], module_tenant: str) -> httpx.Client:
    """A client of the module's tenant on the shared server (provisioned once per module)."""
    return client_for(module_tenant)


@pytest.fixture
def fresh_api(client_for: Callable[[str | None], httpx.Client]) -> httpx.Client:
    """A client of a brand-new, empty tenant: for tests that count what the tenant holds."""
    return client_for(_new_tenant_name())


def _created(response: httpx.Response) -> Json:
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


@pytest.fixture
def make_cabinet() -> Callable[..., Json]:
    def make(client: httpx.Client, **fields: Any) -> Json:
        body = {"name": "Cabinet A", "address": "1 Main St", "contact_number": "+33 1 23 45 67"}
        return _created(client.post("/api/cabinets/", json={**body, **fields}))

    return make


@pytest.fixture
def make_patient() -> Callable[..., Json]:
    def make(client: httpx.Client, **fields: Any) -> Json:
        body = {
            "name": "Ada Lovelace",
            "birthdate": "1990-12-10",
            "contact_number": "+44 20 7946 0000",
            "email": "ada@example.com",
        }
        return _created(client.post("/api/patients/", json={**body, **fields}))

    return make


@pytest.fixture
def make_consultation(
    make_patient: Callable[..., Json], make_cabinet: Callable[..., Json]
) -> Callable[..., Json]:
    def make(client: httpx.Client, **fields: Any) -> Json:
        if "patient" not in fields:
            fields["patient"] = make_patient(client)["id"]
        if "cabinet" not in fields:
            fields["cabinet"] = make_cabinet(client)["id"]
        body = {"date": "2024-03-01T09:30:00Z", "diagnosis": "Caries", "treatment": "Filling"}
        return _created(client.post("/api/consultations/", json={**body, **fields}))

    return make


@pytest.fixture
def own_server(
    signer: TestSigner, make_settings: Callable[[str], ClinicSettings]
) -> Callable[[str], Any]:
    """Context manager factory: a server of its own on the given database URL (settings
    overridden by keyword)."""

    def start(url: str, **overrides: Any) -> Any:
        settings = make_settings(url).model_copy(update=overrides)
        return serve(create_app(settings, token_verifier=signer.verifier()))

    return start


@pytest.fixture
def tenant_of() -> Callable[[httpx.Client], str]:
    """The tenant a test client's token names."""

    def read(client: httpx.Client) -> str:
        token = client.headers["Authorization"].split()[1]
        return str(jwt.decode(token, options={"verify_signature": False})["tenant"])

    return read


@pytest.fixture
def sqlite_tenant_file() -> Callable[[str, str], Path]:
    def path(url: str, tenant: str) -> Path:
        return ClinicSettings(database_url=url).sqlite_tenant_dir / f"{tenant}.sqlite3"

    return path


class TcpProxy:
    """A TCP forwarder to a database that a test can cut (refusing and dropping connections)
    and restore on the same port: the database "goes away" and comes back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._guard = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._guard:
            sockets, self._open = self._open, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._guard:
                self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[str], tuple[TcpProxy, str]]]:
    """Put a cuttable proxy in front of a PostgreSQL URL; returns (proxy, proxied URL)."""
    proxies: list[TcpProxy] = []

    def make(url: str) -> tuple[TcpProxy, str]:
        parsed = make_url(url)
        proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
        proxy.start()
        proxies.append(proxy)
        proxied = parsed.set(host="127.0.0.1", port=proxy.port)
        return proxy, proxied.render_as_string(hide_password=False)

    yield make
    for proxy in proxies:
        proxy.stop()
