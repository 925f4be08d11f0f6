"""The edge service: ``uvicorn edge.main:create_app --factory``."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import httpx
from common.app import create_app as create_service_app
from common.tokens import TokenVerifier, http_jwks_source, prefetch_keys
from fastapi import FastAPI

from edge.api import health_router, router
from edge.settings import EdgeSettings
from edge.tenants import TenantDirectory

VERSION = version("dentiapro-gateway")

log = logging.getLogger("dentiapro.edge")


async def _prefetch_keys(app: FastAPI, verifier: TokenVerifier, interval: float) -> None:
    """Until the JWKS is loaded the gateway's /health/ fails: the edge could verify no token."""
    await prefetch_keys(verifier, interval)
    app.state.keys_loaded = True


def create_app(
    settings: EdgeSettings | None = None, *, token_verifier: TokenVerifier | None = None
) -> FastAPI:
    settings = settings or EdgeSettings()
    verifier = token_verifier or TokenVerifier(
        http_jwks_source(settings.jwks_url, timeout=settings.tenants_timeout),
        issuer=settings.jwt_issuer,
        refetch_interval=settings.jwks_refetch_interval,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=settings.tenants_timeout, limits=limits) as client:
            app.state.http = client
            app.state.tenants = TenantDirectory(
                client, settings.tenants_url, settings.tenant_cache_seconds
            )
            app.state.keys_loaded = False
            prefetch = asyncio.create_task(
                _prefetch_keys(app, verifier, settings.jwks_refetch_interval)
            )
            try:
                yield
            finally:
                prefetch.cancel()

    app = create_service_app(
        service="edge",
        version=VERSION,
        settings=settings,
        routers=[router],
        lifespan=lifespan,
        health=health_router(VERSION),
    )
    app.state.token_verifier = verifier
    return app
