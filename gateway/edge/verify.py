"""ForwardAuth's ``/verify/``, served ahead of FastAPI's router.

Every protected request through the gateway costs one of these, so it is a bare ASGI endpoint:
routing, dependency solving and the exception middleware were over half of the edge's CPU per
check. It still runs inside the observability middleware (request id, metrics by route, the
log line of a denial) and answers errors in the shapes the error handlers give.
"""

from dataclasses import dataclass

from common.errors import (
    DomainError,
    NotAuthenticated,
    ServiceUnavailable,
    TokenInvalid,
    domain_error_response,
)
from common.observability import ACCESS_LOG
from common.tokens import KeysUnavailable, Principal, TokenVerifier, bearer_token
from fastapi.responses import Response
from prometheus_client import Counter
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from edge.tenants import TenantDirectory, TenantsUnavailable

VERIFY_PATH = "/verify/"

TOKEN_CHECKS = Counter(
    "edge_token_checks_total",
    "ForwardAuth token checks by result (ok, denied, error) and reason.",
    ["result", "reason"],
)

# Every (result, reason) labelled once: ``labels()`` takes a lock and hashes its arguments,
# and this runs on every request through the gateway.
_CHECKS = {
    reason: TOKEN_CHECKS.labels(result, reason)
    for result, reason in (
        ("ok", "valid"),
        ("denied", "missing"),
        ("denied", "expired"),
        ("denied", "wrong_type"),
        ("denied", "invalid"),
        ("denied", "inactive_tenant"),
        ("error", "keys_unavailable"),
        ("error", "tenants_unavailable"),
    )
}
# TokenVerifier's messages for the failures worth telling apart in metrics.
_REASONS = {"Token is expired": "expired", "Token has wrong type": "wrong_type"}
INACTIVE_TENANT = "Token's tenant is no longer active."
TENANTS_UNAVAILABLE = "Tenant registry unavailable, try again shortly."


@dataclass(frozen=True, slots=True)
class _Route:
    """What the observability middleware reads from ``scope["route"]``: the template."""

    path: str = VERIFY_PATH


_VERIFY_ROUTE = _Route()


async def authorize(
    token: str | None, verifier: TokenVerifier, tenants: TenantDirectory
) -> Principal:
    """The principal of a valid access token of an active tenant; a ``DomainError`` otherwise.

    Every outcome is counted in ``edge_token_checks_total``.
    """
    if token is None:
        _CHECKS["missing"].inc()
        raise NotAuthenticated()
    try:
        claims = await verifier.verify_async(token)
    except TokenInvalid as exc:
        _CHECKS[_REASONS.get(exc.detail, "invalid")].inc()
        raise
    except KeysUnavailable:
        _CHECKS["keys_unavailable"].inc()
        raise
    principal = Principal.from_claims(claims)
    try:
        active = await tenants.is_active(principal.tenant)
    except TenantsUnavailable as exc:
        _CHECKS["tenants_unavailable"].inc()
        raise ServiceUnavailable(TENANTS_UNAVAILABLE) from exc
    if not active:
        _CHECKS["inactive_tenant"].inc()
        raise TokenInvalid(INACTIVE_TENANT)
    _CHECKS["valid"].inc()
    return principal


class VerifyEndpoint:
    """``/verify/`` (any method: ForwardAuth sends GET) in front of the app's router.

    200 with ``X-User-Id`` and ``X-Tenant`` and no body for a valid token, else the 401 (or
    503) the client is to receive. ``X-Request-ID`` is added by the observability middleware.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != VERIFY_PATH:
            await self.app(scope, receive, send)
            return
        scope["route"] = _VERIFY_ROUTE
        state = scope["app"].state
        response: Response
        try:
            token = bearer_token(Headers(scope=scope).get("authorization"))
            principal = await authorize(token, state.token_verifier, state.tenants)
        except DomainError as exc:
            response = domain_error_response(exc)
        else:
            # No access line for a granted check: the service behind logs this request (with
            # the same request id); denials and errors are still logged.
            scope.setdefault("state", {})[ACCESS_LOG] = False
            response = Response(
                status_code=200,
                headers={"X-User-Id": str(principal.user_id), "X-Tenant": principal.tenant},
            )
        await response(scope, receive, send)
