"""``create_app``: one call gives a service its errors, metrics, health, logging and lifespan.

What differs between services is passed in; what is alike is done here, in this order at
start-up: logging; the service's own database (an async engine on ``app.state.engine``,
migrated first); the token verifier (``app.state.token_verifier``, its JWKS fetched from auth in
the background); then the service's own ``lifespan``. Shut down in reverse, the spans still
batched exported last.

Tracing (``common.tracing``) is set up while the app is built, and only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.
"""

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.types import ASGIApp

from common import openapi, tracing
from common.db import create_async_db_engine, create_db_engine, ping_async, upgrade
from common.errors import install_error_handlers
from common.health import HealthCheck, health_router
from common.middleware import ServiceMiddleware
from common.observability import configure_logging, track_engine
from common.settings import ServiceSettings
from common.tokens import (
    TokenVerifier,
    http_jwks_source,
    jwks_health_check,
    keys_prefetched,
)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


@dataclass(frozen=True, slots=True)
class Database:
    """A service's own database: where it is, and its Alembic tree (applied at start-up)."""

    url: str
    migrations: Path
    # Any constant of the service's own: replicas starting together take turns at migrating.
    lock_key: int


# Allocations between two young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 10_000


def tune_garbage_collector() -> None:
    """Keep the cyclic garbage collector off the latency tail (docs/performance.md).

    Everything alive once the app has started (modules, the framework, caches: ~140,000
    objects) lives as long as the process: ``gc.freeze()`` takes it out of every collection.
    With dozens of requests in flight, objects still in use at a young collection are promoted
    and die old, and old-generation collections paused the event loop for 50-140 ms under load
    (measured); collecting the young generation every 10,000 allocations instead of 700 lets
    a request's objects die young.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def metrics_router() -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics/", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router


def migrate(database: Database) -> None:
    # Alembic is synchronous: psycopg2 (or sqlite3) on a one-connection engine, in a thread.
    engine = create_db_engine(database.url, pool_size=1, max_overflow=0)
    try:
        upgrade(database.migrations, engine, lock_key=database.lock_key)
    finally:
        engine.dispose()


async def _check_database(app: FastAPI) -> None:
    await ping_async(app.state.engine)


def create_app(
    *,
    service: str,
    version: str,
    settings: ServiceSettings,
    routers: Sequence[APIRouter],
    database: Database | None = None,
    jwks_url: str | None = None,
    token_verifier: TokenVerifier | None = None,
    lifespan: Lifespan | None = None,
    health_checks: Mapping[str, HealthCheck] | None = None,
    health: APIRouter | None = None,
    middleware: Sequence[Callable[[ASGIApp], ASGIApp]] = (),
) -> FastAPI:
    """A FastAPI app wired the way every DentiaPro service is.

    ``database``: the service's own database, migrated at start-up, served through an async
    engine on ``app.state.engine`` and checked by ``/health/`` as ``database``.
    ``jwks_url`` (or a ready ``token_verifier``, e.g. in tests): protected routes verify tokens
    with auth's public keys, fetched in the background from start-up (``/health/`` checks
    ``jwks`` until they are held).
    ``lifespan`` sets up what else the service needs on ``app.state``, after the above.
    ``health_checks`` are run by ``/health/`` concurrently, each within the settings' timeout;
    ``health`` replaces the standard ``/health/`` routes altogether (a process whose readiness
    is not its own, like the edge that aggregates the services behind the gateway).
    ``middleware`` (pure ASGI, outermost first) runs inside the service middleware, just before
    FastAPI's router.
    """
    verifier = token_verifier
    if verifier is None and jwks_url is not None:
        verifier = TokenVerifier(
            http_jwks_source(jwks_url),
            issuer=settings.jwt_issuer,
            refetch_interval=settings.jwks_refetch_interval,
        )
    checks: dict[str, HealthCheck] = {}
    if database is not None:
        checks["database"] = _check_database
    if verifier is not None:
        checks["jwks"] = jwks_health_check
    checks.update(health_checks or {})

    traced = tracing.configure(service, version)

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(service, settings.log_level)
        async with AsyncExitStack() as stack:
            if traced:
                stack.push_async_callback(asyncio.to_thread, tracing.flush)
            if database is not None:
                await asyncio.to_thread(migrate, database)
                engine = create_async_db_engine(
                    database.url,
                    pool_size=settings.db_pool_size,
                    max_overflow=settings.db_max_overflow,
                    application_name=f"dentiapro-{service}",
                )
                track_engine(engine)
                app.state.engine = engine
                stack.push_async_callback(engine.dispose)
            if verifier is not None:
                app.state.token_verifier = verifier
                await stack.enter_async_context(
                    keys_prefetched(verifier, settings.jwks_refetch_interval)
                )
            if lifespan is not None:
                await stack.enter_async_context(lifespan(app))
            tune_garbage_collector()
            yield

    app = FastAPI(
        title=f"DentiaPro {service}",
        version=version,
        lifespan=app_lifespan,
        redirect_slashes=False,
        # No Swagger page per service (FastAPI's loads its assets from a CDN): the gateway's
        # /api/docs/ shows the whole API from its own files. The document stays: the edge
        # merges it into /api/openapi.json.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json/",
        # FastAPI's own telemetry stays off: left on, it asks OpenTelemetry for its global
        # providers on every request (os.environ lookups), traced or not. common.tracing uses
        # OpenTelemetry's instrumentation instead, and only when tracing is configured.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    if verifier is not None:
        app.state.token_verifier = verifier
    install_error_handlers(app)
    openapi.install(app)
    # Routes are matched in order: the service's own first, they take nearly every request.
    for router in routers:
        app.include_router(router)
    app.include_router(health or health_router(service, version, checks, settings.health_timeout))
    app.include_router(metrics_router())
    for inner in reversed(middleware):
        app.add_middleware(inner)
    app.add_middleware(ServiceMiddleware, max_active_requests=settings.max_active_requests)
    if traced:
        tracing.instrument_app(app)
    return app
