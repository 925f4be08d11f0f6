"""``create_app``: one call gives a service its errors, metrics, health, logging and lifespan."""

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio.to_thread
from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from common.errors import install_error_handlers
from common.health import HealthCheck, health_router
from common.observability import ObservabilityMiddleware, configure_logging
from common.settings import ServiceSettings

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

JSON_TYPES = (b"application/json", b"+json")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class RequestShapeMiddleware:
    """Serves ``/x`` exactly like ``/x/`` (no redirect), ``HEAD`` like ``GET`` without the body,
    and refuses non-JSON bodies with 415."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if not path.endswith("/"):
                scope["path"] = path + "/"
            if scope["method"] == "HEAD":
                await self._head_as_get(scope, receive, send)
                return
            if scope["method"] in BODY_METHODS and not self._json_or_empty(scope):
                response = Response(
                    content=b'{"detail":"Unsupported media type in request. Use application/json."}',
                    status_code=415,
                    media_type="application/json",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _head_as_get(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Routes are declared for GET. The app sees a GET in a copy of the scope; the server
        # keeps the original (HEAD) and sends the headers without the body. The route the
        # router matched is copied back for the observability middleware's labels.
        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, send)
        finally:
            if "route" in as_get:
                scope["route"] = as_get["route"]

    @staticmethod
    def _json_or_empty(scope: Scope) -> bool:
        content_type = b""
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.split(b";", 1)[0].strip().lower()
            elif name == b"content-length":
                has_body = value.strip() not in (b"0", b"")
            elif name == b"transfer-encoding":
                has_body = True
        if not content_type:
            return not has_body
        return content_type == JSON_TYPES[0] or content_type.endswith(JSON_TYPES[1])


def metrics_router() -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics/", summary="Prometheus metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router


def create_app(
    *,
    service: str,
    version: str,
    settings: ServiceSettings,
    routers: Sequence[APIRouter],
    lifespan: Lifespan | None = None,
    health_checks: Mapping[str, HealthCheck] | None = None,
    health: APIRouter | None = None,
    middleware: Sequence[Callable[[ASGIApp], ASGIApp]] = (),
) -> FastAPI:
    """A FastAPI app wired the way every DentiaPro service is.

    ``lifespan`` creates the service's engines and clients on ``app.state`` and closes them;
    ``health_checks`` are run by ``/health/`` concurrently, each within the settings' timeout;
    ``health`` replaces the standard ``/health/`` routes altogether (a process whose readiness
    is not its own, like the edge that aggregates the services behind the gateway);
    ``middleware`` (pure ASGI, outermost first) runs inside the observability and request-shape
    middlewares, just before FastAPI's router: an endpoint too hot for the router lives there.
    """

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(service, settings.log_level)
        # Sync routes and dependencies run in anyio's threads (40 by default). More threads
        # than pooled connections only queue on the pool, and connections beyond the pool size
        # (overflow) are closed as soon as they are returned: under load the pool churns,
        # opening a PostgreSQL backend per burst. Queue in the event loop instead.
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(1, min(limiter.total_tokens, settings.db_pool_size))
        if lifespan is None:
            yield
            return
        async with lifespan(app):
            yield

    app = FastAPI(
        title=f"DentiaPro {service}",
        version=version,
        lifespan=app_lifespan,
        redirect_slashes=False,
        docs_url="/docs/",
        redoc_url=None,
        openapi_url="/openapi.json/",
        # No OpenTelemetry provider is configured anywhere; left on, FastAPI asks OpenTelemetry
        # for its global providers on every request (os.environ lookups) to find that out.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(
        health or health_router(service, version, health_checks or {}, settings.health_timeout)
    )
    app.include_router(metrics_router())
    for router in routers:
        app.include_router(router)
    for inner in reversed(middleware):
        app.add_middleware(inner)
    app.add_middleware(RequestShapeMiddleware)
    app.add_middleware(ObservabilityMiddleware)
    return app
