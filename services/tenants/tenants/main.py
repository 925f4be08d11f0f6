"""The tenants service: ``uvicorn tenants.main:create_app --factory --port 8003``."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from common.app import Database
from common.app import create_app as create_service_app
from common.tokens import TokenVerifier
from fastapi import FastAPI
from sqlmodel.ext.asyncio.session import AsyncSession

from tenants import __version__, crud
from tenants.api import internal, tenants
from tenants.db import MIGRATION_LOCK_KEY, MIGRATIONS
from tenants.settings import TenantsSettings, get_settings

log = logging.getLogger("dentiapro.tenants")


def create_app(
    settings: TenantsSettings | None = None, *, token_verifier: TokenVerifier | None = None
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncSession(app.state.engine) as session:
            await crud.ensure_default_tenant(
                session=session,
                schema_name=settings.default_tenant,
                name=settings.default_tenant_name,
                domain=settings.default_tenant_domain,
            )
        if settings.internal_token is None:
            log.warning("DENTIAPRO_INTERNAL_TOKEN is not set: /internal/ answers 403 to everyone")
        yield

    return create_service_app(
        service="tenants",
        version=__version__,
        settings=settings,
        routers=[tenants.router, internal.router],
        database=Database(settings.database_url, MIGRATIONS, MIGRATION_LOCK_KEY),
        jwks_url=settings.jwks_url,
        token_verifier=token_verifier,
        lifespan=lifespan,
    )
