"""The edge's routes: the gateway's aggregated ``/health/`` and JSON error pages.

Tokens are checked inside Traefik (the tokencheck plugin, gateway/traefik/plugins-local); the
plugin also adds the gateway's own signing-key check to this ``/health/`` on its way out.
"""

import asyncio
import time
from http import HTTPStatus
from typing import Any

import httpx
from common.observability import KNOWN_METHODS
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from edge.settings import EdgeSettings

# Bodies of the errors Traefik itself produces (no healthy server, timeout, too large, ...).
ERROR_DETAILS = {
    404: "Not found.",
    413: "Request body too large (limit 1 MiB).",
    429: "Request was throttled.",
    500: "Internal server error.",
    502: "Bad gateway: the service is unreachable.",
    503: "Service unavailable, try again shortly.",
    504: "Gateway timeout: the service did not answer in time.",
}
RETRY_AFTER = {429: "1", 503: "5"}

router = APIRouter()


@router.api_route(
    "/errors/{status}/",
    methods=sorted(KNOWN_METHODS),
    summary="JSON error page for Traefik's errors",
)
async def error_page(status: int) -> JSONResponse:
    """``{"detail": ...}`` for ``status``; Traefik's errors middleware keeps the original code."""
    if not 400 <= status <= 599:
        status = 404
    detail = ERROR_DETAILS.get(status)
    if detail is None:
        try:
            detail = f"{HTTPStatus(status).phrase}."
        except ValueError:
            detail = "Request failed."
    headers = {"Retry-After": RETRY_AFTER[status]} if status in RETRY_AFTER else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _check_service(client: httpx.AsyncClient, url: str, timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        # wait_for bounds the whole exchange; httpx's timeout is per connect/read step.
        response = await asyncio.wait_for(client.get(f"{url.rstrip('/')}/health/"), timeout)
    except TimeoutError:
        return {"status": "fail", "output": f"no answer within {timeout:g}s"}
    except httpx.HTTPError as exc:
        return {"status": "fail", "output": f"unreachable ({type(exc).__name__})"}
    elapsed = round((time.perf_counter() - started) * 1000, 2)
    if response.status_code != 200:
        return {"status": "fail", "time_ms": elapsed, "output": f"HTTP {response.status_code}"}
    return {"status": "pass", "time_ms": elapsed}


class HealthAggregate:
    """Every service's ``/health/``, checked concurrently, the answer reused for
    ``health_cache_seconds``: one fan-out at a time, concurrent callers share it, so a flood of
    (unauthenticated) calls costs the services and their databases one check per period."""

    def __init__(self, client: httpx.AsyncClient, settings: EdgeSettings, version: str) -> None:
        self._client = client
        self._settings = settings
        self._version = version
        self._answer: tuple[int, dict[str, Any]] | None = None
        self._answered_at = float("-inf")
        self._pending: asyncio.Task[tuple[int, dict[str, Any]]] | None = None

    async def answer(self) -> tuple[int, dict[str, Any]]:
        """The status code and body of the gateway's ``/health/``."""
        fresh = time.monotonic() - self._answered_at < self._settings.health_cache_seconds
        if self._answer is not None and fresh:
            return self._answer
        if self._pending is None:
            self._pending = asyncio.create_task(self._check_all())
        # Shielded: one caller going away must not cancel the check the others wait for.
        return await asyncio.shield(self._pending)

    async def _check_all(self) -> tuple[int, dict[str, Any]]:
        try:
            settings = self._settings
            names = list(settings.upstreams)
            results = await asyncio.gather(
                *(
                    _check_service(
                        self._client, settings.upstreams[name], settings.upstream_health_timeout
                    )
                    for name in names
                )
            )
            healthy = all(result["status"] == "pass" for result in results)
            body = {
                "status": "pass" if healthy else "fail",
                "version": self._version,
                "services": dict(zip(names, results, strict=True)),
            }
            self._answer = (200 if healthy else 503, body)
            self._answered_at = time.monotonic()
            return self._answer
        finally:
            self._pending = None


def health_router() -> APIRouter:
    """The gateway's /health/ (every service, concurrently) and the edge's own liveness."""
    health = APIRouter(tags=["health"])

    @health.get("/health/", summary="Readiness of every service behind the gateway")
    async def aggregate_health(request: Request) -> JSONResponse:
        aggregate: HealthAggregate = request.app.state.health
        status, body = await aggregate.answer()
        return JSONResponse(body, status_code=status)

    @health.get("/health/live/", summary="Liveness: the edge process answers")
    async def live() -> dict[str, str]:
        return {"status": "pass", "service": "edge"}

    return health
