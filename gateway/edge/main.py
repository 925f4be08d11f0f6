"""The edge service: ``uvicorn edge.main:create_app --factory``."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import httpx
from common.app import create_app as create_service_app
from common.tokens import TokenVerifier, http_jwks_source, keys_prefetched
from fastapi import FastAPI

from edge.api import health_router, router
from edge.settings import EdgeSettings
from edge.tenants import TenantDirectory
from edge.verify import VerifyEndpoint

VERSION = version("dentiapro-gateway")

log = logging.getLogger("dentiapro.edge")


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
            token = settings.internal_token
            app.state.tenants = TenantDirectory(
                client,
                settings.tenants_url,
                settings.tenant_cache_seconds,
                token.get_secret_value() if token else None,
            )
            # Until the JWKS is loaded the gateway's /health/ fails: no token could be verified.
            async with (
                keys_prefetched(verifier, settings.jwks_refetch_interval),
                app.state.tenants.refreshing(),
            ):
                yield

    app = create_service_app(
        service="edge",
        version=VERSION,
        settings=settings,
        routers=[router],
        lifespan=lifespan,
        health=health_router(VERSION),
        middleware=[VerifyEndpoint],
    )
    app.state.token_verifier = verifier
    return app
