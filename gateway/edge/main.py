"""The edge service: ``uvicorn edge.main:create_app --factory``."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from common.app import create_app as create_service_app
from common.clients import internal_client
from fastapi import FastAPI

from edge.api import HealthAggregate, health_router, router
from edge.docs import load_assets
from edge.docs import router as docs_router
from edge.openapi import OpenAPIAggregate
from edge.settings import EdgeSettings

VERSION = version("dentiapro-gateway")


def create_app(settings: EdgeSettings | None = None) -> FastAPI:
    settings = settings or EdgeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with internal_client(
            timeout=settings.upstream_health_timeout,
            max_connections=50,
            max_keepalive_connections=10,
        ) as client:
            app.state.health = HealthAggregate(client, settings, VERSION)
            app.state.openapi = OpenAPIAggregate(client, settings, VERSION)
            # Read and gzipped once (1.5 MB of Swagger UI), off the event loop.
            app.state.docs_assets = await asyncio.to_thread(load_assets)
            yield

    return create_service_app(
        service="edge",
        version=VERSION,
        settings=settings,
        routers=[router, docs_router],
        lifespan=lifespan,
        health=health_router(),
    )
