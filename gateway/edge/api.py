"""The edge's routes: ForwardAuth ``/verify/``, the gateway's ``/health/`` and JSON error pages."""

import asyncio
import time
from http import HTTPStatus
from typing import Any

import httpx
from common.errors import NotAuthenticated, ServiceUnavailable, TokenInvalid
from common.tokens import KEYS_NOT_LOADED, KeysUnavailable, Principal, TokenVerifier, bearer_token
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter

from edge.settings import EdgeSettings
from edge.tenants import TenantDirectory, TenantsUnavailable

TOKEN_CHECKS = Counter(
    "edge_token_checks_total",
    "ForwardAuth token checks by result (ok, denied, error) and reason.",
    ["result", "reason"],
)

# TokenVerifier's messages for the failures worth telling apart in metrics.
_REASONS = {"Token is expired": "expired", "Token has wrong type": "wrong_type"}
INACTIVE_TENANT = "Token's tenant is no longer active."
TENANTS_UNAVAILABLE = "Tenant registry unavailable, try again shortly."

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
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

router = APIRouter()


@router.get("/verify/", summary="ForwardAuth: is this request's access token valid?")
async def verify(request: Request) -> Response:
    """200 with X-User-Id and X-Tenant for a valid access token of an active tenant, else 401."""
    token = bearer_token(request)
    if token is None:
        TOKEN_CHECKS.labels("denied", "missing").inc()
        raise NotAuthenticated()
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        if verifier.verifies_offline(token):
            claims = verifier.verify(token)
        else:  # the JWKS fetch is blocking I/O: keep it off the event loop
            claims = await asyncio.to_thread(verifier.verify, token)
    except TokenInvalid as exc:
        TOKEN_CHECKS.labels("denied", _REASONS.get(exc.detail, "invalid")).inc()
        raise
    except KeysUnavailable:
        TOKEN_CHECKS.labels("error", "keys_unavailable").inc()
        raise
    principal = Principal.from_claims(claims)
    tenants: TenantDirectory = request.app.state.tenants
    try:
        active = await tenants.is_active(principal.tenant)
    except TenantsUnavailable as exc:
        TOKEN_CHECKS.labels("error", "tenants_unavailable").inc()
        raise ServiceUnavailable(TENANTS_UNAVAILABLE) from exc
    if not active:
        TOKEN_CHECKS.labels("denied", "inactive_tenant").inc()
        raise TokenInvalid(INACTIVE_TENANT)
    TOKEN_CHECKS.labels("ok", "valid").inc()
    # No access line for a granted check: the service behind logs this request (with the
    # same request id); denials and errors are still logged here.
    request.state.access_log = False
    # X-Request-ID (the client's, or a new one) is added by the observability middleware.
    return Response(
        status_code=200,
        headers={"X-User-Id": str(principal.user_id), "X-Tenant": principal.tenant},
    )


@router.api_route(
    "/errors/{status}/", methods=ANY_METHOD, summary="JSON error page for Traefik's errors"
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


def health_router(version: str) -> APIRouter:
    """The gateway's /health/ (every service, concurrently) and the edge's own liveness."""
    health = APIRouter(tags=["health"])

    @health.get("/health/", summary="Readiness of every service behind the gateway")
    async def aggregate_health(request: Request) -> JSONResponse:
        settings: EdgeSettings = request.app.state.settings
        client: httpx.AsyncClient = request.app.state.http
        names = list(settings.upstreams)
        results = await asyncio.gather(
            *(
                _check_service(client, settings.upstreams[name], settings.upstream_health_timeout)
                for name in names
            )
        )
        services = dict(zip(names, results, strict=True))
        verifier: TokenVerifier = request.app.state.token_verifier
        keys = (
            {"status": "pass"}
            if verifier.has_keys
            else {"status": "fail", "output": KEYS_NOT_LOADED}
        )
        healthy = keys["status"] == "pass" and all(r["status"] == "pass" for r in results)
        body = {
            "status": "pass" if healthy else "fail",
            "version": version,
            "services": services,
            "checks": {"jwks": keys},
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    @health.get("/health/live/", summary="Liveness: the edge process answers")
    async def live() -> dict[str, str]:
        return {"status": "pass", "service": "edge"}

    return health
