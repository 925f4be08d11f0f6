"""Stand-ins for auth and the tenants service, and a Traefik with the token check in front of
them (the fixtures in conftest.py start them)."""

import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from common.testing import TestSigner, serve
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import system


def echo_api(app: FastAPI) -> None:
    """Any other ``/api/`` request is answered with ``{"path", "headers"}``: what a service
    behind the gateway receives."""

    @app.api_route("/api/{path:path}", methods=["GET", "POST", "HEAD"])
    def echo(request: Request, path: str) -> dict[str, Any]:
        return {"path": f"/api/{path}", "headers": dict(request.headers)}


class AuthStandIn:
    """Auth's JWKS (keys can be added: rotation) and ``/health/``; counts JWKS fetches; echoes
    the rest of ``/api/`` (``echo_api``)."""

    def __init__(self, *signers: TestSigner) -> None:
        self.keys: list[dict[str, Any]] = [key for s in signers for key in s.jwks["keys"]]
        self.fetches = 0
        self.app = FastAPI()

        @self.app.get("/api/auth/jwks/")
        def jwks() -> dict[str, Any]:
            self.fetches += 1
            return {"keys": self.keys}

        @self.app.get("/health/")
        def health() -> dict[str, str]:
            return {"status": "pass"}

        echo_api(self.app)

    def publish(self, *keys: dict[str, Any]) -> None:
        self.keys = [*self.keys, *keys]


@dataclass
class TenantsStandIn:
    """The tenants service's internal endpoints, from ``statuses`` (schema_name -> is_active),
    counting each call and the ``X-Internal-Token`` it came with, failing (HTTP 500) while
    ``failing`` is set; echoes ``/api/`` (``echo_api``)."""

    statuses: dict[str, bool] = field(default_factory=lambda: {"public": True})
    status_calls: int = 0
    resolve_calls: dict[str, int] = field(default_factory=dict)
    internal_tokens: list[str | None] = field(default_factory=list)
    failing: bool = False
    app: FastAPI = field(default_factory=FastAPI)

    def __post_init__(self) -> None:
        @self.app.get("/internal/tenants/status/", response_model=None)
        def status(request: Request) -> dict[str, Any] | Response:
            self.status_calls += 1
            self.internal_tokens.append(request.headers.get("x-internal-token"))
            if self.failing:
                return JSONResponse({"detail": "Internal server error."}, status_code=500)
            return {"tenants": dict(self.statuses)}

        @self.app.get("/internal/tenants/resolve/", response_model=None)
        def resolve(request: Request, schema_name: str) -> dict[str, Any] | Response:
            self.resolve_calls[schema_name] = self.resolve_calls.get(schema_name, 0) + 1
            self.internal_tokens.append(request.headers.get("x-internal-token"))
            time.sleep(0.05)  # long enough for concurrent lookups of one tenant to overlap
            if self.failing:
                return JSONResponse({"detail": "Internal server error."}, status_code=500)
            if schema_name not in self.statuses:
                return JSONResponse({"detail": "Not found."}, status_code=404)
            return {"schema_name": schema_name, "is_active": self.statuses[schema_name]}

        @self.app.get("/health/")
        def health() -> dict[str, str]:
            return {"status": "pass"}

        echo_api(self.app)


@dataclass
class TokenGateway:
    """A Traefik with the committed configuration (but the settings given) and its stand-ins."""

    processes: Any
    auth: AuthStandIn
    tenants: TenantsStandIn
    auth_url: str

    @property
    def url(self) -> str:
        url: str = self.processes.gateway_url
        return url

    def get(self, path: str, token: str | None = None, **headers: str) -> httpx.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=10)

    def counters(self) -> dict[tuple[str, str], float]:
        """``gateway_token_checks_total`` by (result, reason), from the internal entry point."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(self.processes.token_check_metrics_url, timeout=10).text
        return {
            (sample.labels["result"], sample.labels["reason"]): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "gateway_token_checks_total"
        }

    def wait_for_keys(self, timeout: float = 15.0) -> None:
        self.processes.wait_until_keys_loaded(timeout)


def dynamic_config(destination: Path, **plugin_settings: Any) -> Path:
    """A copy of gateway/traefik/dynamic with extra settings on the verify-token middleware
    (those the environment does not template, such as the staleness bound)."""
    shutil.copytree(system.TRAEFIK_DIR / "dynamic", destination)
    middlewares = destination / "middlewares.yml"
    lines = middlewares.read_text().splitlines()
    at = lines.index("          mode: verify")
    extra = [f"          {name}: {value}" for name, value in plugin_settings.items()]
    middlewares.write_text("\n".join([*lines[: at + 1], *extra, *lines[at + 1 :]]) + "\n")
    return destination


GatewayFactory = Callable[..., AbstractContextManager[TokenGateway]]


def wait_until_routed(processes: Any, ignore: set[str], timeout: float = 30.0) -> None:
    """Until Traefik routes to every stand-in but those in ``ignore`` (not serving yet)."""
    deadline = time.monotonic() + timeout
    down: object = "its API does not answer"
    while time.monotonic() < deadline:
        try:
            down = set(processes.servers_down()) - ignore
            if not down:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"Traefik still routes around {down}\n{processes.log_tail('traefik')}")


@contextmanager
def serving(condition: bool, app: FastAPI, port: int) -> Iterator[None]:
    """``serve(app, port)`` when ``condition``, else nothing listens on ``port``."""
    if not condition:
        yield
        return
    with serve(app, port=port):
        yield
