"""The tenants service: ``uvicorn tenants.main:create_app --factory --port 8003``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from common.app import create_app as create_service_app
from common.db import ping
from common.observability import track_engine
from common.tokens import (
    TokenVerifier,
    http_jwks_source,
    jwks_health_check,
    keys_prefetched,
)
from fastapi import FastAPI
from sqlmodel import Session

from tenants import __version__, crud
from tenants.api import internal, tenants
from tenants.db import create_engine, migrate
from tenants.settings import TenantsSettings, get_settings


def _database_check(app: FastAPI) -> None:
    ping(app.state.engine)


def create_app(
    settings: TenantsSettings | None = None, *, token_verifier: TokenVerifier | None = None
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(settings)
        engine = create_engine(settings)
        track_engine(engine)
        with Session(engine) as session:
            crud.ensure_default_tenant(
                session=session,
                schema_name=settings.default_tenant,
                name=settings.default_tenant_name,
                domain=settings.default_tenant_domain,
            )
        app.state.engine = engine
        verifier = token_verifier or TokenVerifier(
            http_jwks_source(settings.jwks_url),
            issuer=settings.jwt_issuer,
            refetch_interval=settings.jwks_refetch_interval,
        )
        app.state.token_verifier = verifier
        try:
            async with keys_prefetched(verifier, settings.jwks_refetch_interval):
                yield
        finally:
            engine.dispose()

    return create_service_app(
        service="tenants",
        version=__version__,
        settings=settings,
        routers=[tenants.router, internal.router],
        lifespan=lifespan,
        health_checks={"database": _database_check, "jwks": jwks_health_check},
    )
