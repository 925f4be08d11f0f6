"""Test helpers (tests only): a signing key that mints tokens the way the auth service does,
hand-forged tokens for the attacks a JWT library will not produce, a migrations check, and a
local OTLP receiver that collects the spans processes export."""

import base64
import gzip
import hashlib
import hmac
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any

import httpx
import jwt
import uvicorn
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from sqlalchemy import Connection, MetaData, Table, inspect

from common.tokens import TokenVerifier

TEST_ISSUER = "dentiapro-auth"


class TestSigner:
    """An Ed25519 key with a JWKS and a ``mint`` that makes (possibly hostile) tokens."""

    __test__ = False  # not a pytest test class

    def __init__(self, kid: str | None = None, issuer: str = TEST_ISSUER) -> None:
        self.kid = kid or uuid.uuid4().hex[:16]
        self.issuer = issuer
        self.private_key = Ed25519PrivateKey.generate()

    @property
    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def jwks(self) -> dict[str, Any]:
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "alg": "EdDSA", "use": "sig"}]}

    def verifier(self) -> TokenVerifier:
        return TokenVerifier.from_jwks(self.jwks, issuer=self.issuer)

    def claims(
        self,
        *,
        user_id: int = 1,
        username: str = "tester",
        tenant: str = "public",
        is_superuser: bool = False,
        role: str = "admin",
        token_type: str = "access",
        lifetime: int = 300,
    ) -> dict[str, Any]:
        now = int(time.time())
        return {
            "sub": str(user_id),
            "user_id": user_id,
            "username": username,
            "tenant": tenant,
            "is_superuser": is_superuser,
            "role": role,
            "token_type": token_type,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + lifetime,
            "iss": self.issuer,
        }

    def mint(self, **kwargs: Any) -> str:
        """A signed token; keyword arguments as in ``claims``."""
        return self.sign(self.claims(**kwargs))

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(
            claims,
            self.private_key,
            algorithm="EdDSA",
            headers={"kid": self.kid, **(headers or {})},
        )

    def auth_header(self, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.mint(**kwargs)}"}

    @property
    def public_key_encodings(self) -> dict[str, bytes]:
        """The public key as an algorithm-confusion attacker would try it for an HMAC secret:
        PEM, raw bytes, and the JWKS's ``x`` (everyone can read all three)."""
        public = self.private_key.public_key()
        return {
            "pem": public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "raw": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
            "jwk_x": self.jwks["keys"][0]["x"].encode(),
        }


def b64url(data: bytes) -> str:
    """Unpadded base64url, as the three parts of a JWT are encoded."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signing_input(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"


def forge_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A JWT put together by hand, e.g. ``alg: none`` with an empty signature, which no JWT
    library signs."""
    return f"{_signing_input(header, claims)}.{b64url(signature)}"


def hs256_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """A JWT HMAC-SHA256-signed with ``secret`` by hand: PyJWT refuses a PEM public key as an
    HMAC secret, which is exactly what an algorithm-confusion attack uses."""
    signing_input = _signing_input(header, claims)
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def with_claims(token: str, **changes: Any) -> str:
    """``token`` with some claims edited, its header and signature kept: a tampered payload."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edited = b64url(json.dumps({**claims, **changes}).encode())
    return f"{header}.{edited}.{signature}"


def migration_drift(connection: Connection, models: ModuleType, **options: Any) -> list[Any]:
    """What Alembic's autogenerate would change to turn the schema on ``connection`` (built by
    the migrations) into the tables of ``models`` (a service's models module): empty when the
    migrations and the models agree. ``options`` go to Alembic's ``MigrationContext``.

    Only the module's own tables are compared: SQLModel keeps one process-wide metadata, which
    holds other services' tables too when their tests share the run.
    """
    metadata = MetaData()
    for value in vars(models).values():
        table = getattr(value, "__table__", None)
        defined_here = isinstance(value, type) and value.__module__ == models.__name__
        if defined_here and isinstance(table, Table):
            table.to_metadata(metadata)
    if not metadata.tables:
        raise ValueError(f"{models.__name__} defines no table: nothing to compare")
    opts = {"compare_type": True, "compare_server_default": True, **options}
    context = MigrationContext.configure(connection, opts=opts)
    return [*compare_metadata(context, metadata), *_partial_index_drift(connection, metadata)]


def _predicate(clause: Any) -> str | None:
    """A partial index's WHERE as comparable text (PostgreSQL reflects ``deleted_at IS NULL``
    as ``(deleted_at IS NULL)``); None for a full index."""
    if clause is None:
        return None
    return " ".join(str(clause).lower().replace("(", " ").replace(")", " ").split())


def _partial_index_drift(connection: Connection, metadata: MetaData) -> list[Any]:
    """Alembic's autogenerate ignores a partial index's WHERE, yet a unique index with another
    predicate enforces another rule than the model states: compare them here."""
    where = f"{connection.dialect.name}_where"
    inspector = inspect(connection)
    drift: list[Any] = []
    for table in metadata.tables.values():
        migrated = {
            index["name"]: _predicate(index.get("dialect_options", {}).get(where))
            for index in inspector.get_indexes(table.name, schema=table.schema)
        }
        for index in table.indexes:
            modelled = _predicate(index.kwargs.get(where))
            # A missing index is compare_metadata's to report.
            if index.name in migrated and migrated[index.name] != modelled:
                drift.append(("modify_index_where", index.name, migrated[index.name], modelled))
    return drift


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(app: Any, port: int | None = None) -> Iterator[str]:
    """Run ``app`` on uvicorn in a background thread; yield its base URL (real HTTP in tests).

    The app's lifespan runs, exactly as in production; the server stops when the block ends.
    """
    port = port or free_port()
    # As the images run it: X-Forwarded-For is the services' to read (common.address).
    # The keep-alive timeout outlives the clients' (httpx drops an idle connection after 5 s,
    # uvicorn's default too): with both at 5 s, a request sent on a connection the server was
    # closing at that instant failed with "Server disconnected" (seen once in ~2,000 tests).
    # Traefik does the same in production (idleConnTimeout 4 s, below the services' 5 s).
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        timeout_keep_alive=60,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class JwksServer:
    """Stands in for auth: its JWKS at /api/auth/jwks/ (mutable: key rotation) and /health/."""

    def __init__(self, signer: TestSigner) -> None:
        self.jwks: dict[str, Any] = signer.jwks
        self.app = FastAPI()

        @self.app.get("/api/auth/jwks/")
        def jwks() -> dict[str, Any]:
            return self.jwks

        @self.app.get("/health/")
        def health() -> dict[str, str]:
            return {"status": "pass"}

    def add_key(self, other: TestSigner) -> None:
        self.jwks = {"keys": [*self.jwks["keys"], *other.jwks["keys"]]}


def assert_not_ready_until_keys_load(
    make_app: Callable[[str], Any], signer: TestSigner, protected_path: str, **claims: Any
) -> None:
    """A service started while auth is unreachable: /health/ fails on ``jwks`` (the database
    passing) and a valid token gets 503 + Retry-After, not 401; once auth serves its JWKS
    (on the address ``make_app`` was given) the service turns ready and the token works; a key
    auth adds later (rotation) is accepted on its first token.

    ``make_app(auth_url)`` builds the service's app fetching the JWKS from ``auth_url``;
    ``claims`` shape the token (``is_superuser=True`` for a superuser route).
    """
    port = free_port()
    app = make_app(f"http://127.0.0.1:{port}")
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        health = client.get("/health/")
        assert health.status_code == 503, health.text
        assert health.json()["checks"]["jwks"]["status"] == "fail"
        assert health.json()["checks"]["database"]["status"] == "pass"
        response = client.get(protected_path, headers=signer.auth_header(**claims))
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "1"
        jwks_server = JwksServer(signer)
        with serve(jwks_server.app, port=port):
            deadline = time.monotonic() + 10
            while client.get("/health/").status_code != 200:
                assert time.monotonic() < deadline, "keys never loaded"
                time.sleep(0.1)
            health = client.get("/health/")
            assert health.json()["checks"]["jwks"]["status"] == "pass"
            response = client.get(protected_path, headers=signer.auth_header(**claims))
            assert response.status_code == 200, response.text
            # Auth rotates its key: the first token under the new kid makes the service fetch
            # the JWKS again (JWKS_REFETCH_INTERVAL, 1 s by default, after the last fetch).
            jwks_server.add_key(rotated := TestSigner(issuer=signer.issuer))
            time.sleep(1.1)
            response = client.get(protected_path, headers=rotated.auth_header(**claims))
            assert response.status_code == 200, response.text


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    """One span as an OTLP receiver decoded it (ids in hex, as log lines carry them)."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any] = field(default_factory=dict)


class OtlpReceiver:
    """A local OTLP/HTTP receiver: ``POST /v1/traces`` with an ``ExportTraceServiceRequest``
    (protobuf, gzip or not), decoded with the ``opentelemetry-proto`` package; every span kept.

    ``endpoint`` is what ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes (the base URL), ``traces_url``
    the full URL (Traefik's ``tracing.otlp.http.endpoint``). Use as a context manager.
    """

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self._body()
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                receiver._receive(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _body(self) -> bytes:
                # Go's exporter (Traefik's) streams its body in chunks, with no length.
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                chunks = []
                while size := int(self.rfile.readline().split(b";", 1)[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()  # the CRLF after each chunk
                self.rfile.readline()  # the CRLF after the last, empty one
                return b"".join(chunks)

            def log_message(self, *_: Any) -> None:  # quiet: the test reads the spans
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.traces_url = f"{self.endpoint}/v1/traces"

    def _receive(self, body: bytes) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _any_value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name", "")),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes={a.key: _any_value(a.value) for a in span.attributes},
                        )
                    )
        with self._lock:
            self.requests += 1
            self.spans.extend(spans)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def wait_for(
        self, condition: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0
    ) -> list[ReceivedSpan]:
        """Every span received, once ``condition`` holds for them (AssertionError after
        ``timeout``: exporters send in batches)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if condition(spans):
                return spans
            assert time.monotonic() < deadline, "spans never matched; got " + "\n".join(
                f"{s.service} {s.name} trace={s.trace_id} parent={s.parent_span_id} "
                f"{ {k: v for k, v in s.attributes.items() if k.startswith(('http', 'url'))} }"
                for s in spans
                if not s.attributes.get("db.system")
            )
            time.sleep(0.05)

    def __enter__(self) -> "OtlpReceiver":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _any_value(value: Any) -> Any:
    """An OTLP ``AnyValue`` as Python: str, int, bool, float, bytes, or a list of those."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _any_value(item.value) for item in value.kvlist_value.values}
    return getattr(value, kind)


def check_openapi_document(document: dict[str, Any], *, public: set[str]) -> None:
    """What DESIGN.md section 5 asks of a service's OpenAPI document (``common.openapi``);
    ``public`` are the paths whose operations need no token."""
    assert document["openapi"] == "3.1.0"
    text = json.dumps(document)
    assert '"422"' not in text
    assert "HTTPValidationError" not in text
    for reference in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        target: Any = document
        for part in reference.split("/"):
            assert part in target, f"unresolved $ref #/{reference}"
            target = target[part]
    for schema in document["components"]["schemas"].values():
        for name in ("id", "created_at", "updated_at"):
            if name in schema.get("properties", {}):
                assert schema["properties"][name].get("readOnly") is True, name
    for path, item in document["paths"].items():
        assert not path.startswith(("/internal/", "/metrics")), path
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            statuses = set(operation["responses"])
            if path in public or not path.startswith("/api/"):
                assert "security" not in operation, where
            else:
                assert operation.get("security") == [{"bearerAuth": []}], where
                assert "401" in statuses, where
                www = operation["responses"]["401"]["headers"]["WWW-Authenticate"]
                assert www["required"] is True, where
            if path.startswith("/api/"):
                assert "503" in statuses, where
            if "{" in path:
                assert "404" in statuses, where
            if method in ("post", "put", "patch"):
                assert {"400", "413", "415"} <= statuses, where
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert "application/json" in response["content"], f"{where} {status}"
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
