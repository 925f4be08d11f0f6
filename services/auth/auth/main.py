"""The auth service: ``uvicorn auth.main:create_app --factory``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from common.app import create_app as create_service_app
from common.clients import internal_client
from fastapi import FastAPI
from sqlmodel.ext.asyncio.session import AsyncSession

from auth import __version__, crud
from auth.api import routers
from auth.db import database
from auth.keys import KeyRing
from auth.passwords import PasswordHasher
from auth.settings import AuthSettings, get_settings
from auth.tenants_client import TenantsClient


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """What is auth's own: the password hasher, the signing keys, the superuser, the
        tenants client (the database is migrated and on ``app.state.engine`` by now)."""
        hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
            max_concurrent=settings.argon2_max_concurrent,
        )
        try:
            keys = await KeyRing.open(settings, app.state.engine)
            if settings.admin_username and settings.admin_password:
                async with AsyncSession(app.state.engine, expire_on_commit=False) as session:
                    await crud.ensure_superuser(
                        session=session,
                        username=settings.admin_username,
                        password=settings.admin_password.get_secret_value(),
                        tenant=settings.default_tenant,
                        hasher=hasher,
                    )
            app.state.hasher = hasher
            app.state.keys = keys
            # Auth verifies its own tokens with the published keys: no HTTP to itself.
            app.state.token_verifier = keys.verifier
            async with (
                keys.watching(),
                internal_client(
                    timeout=settings.tenants_timeout, headers=settings.internal_headers
                ) as http,
            ):
                app.state.tenants = TenantsClient(
                    http, settings.tenants_url, default_tenant=settings.default_tenant
                )
                yield
        finally:
            hasher.close()

    return create_service_app(
        service="auth",
        version=__version__,
        settings=settings,
        routers=routers,
        database=database(settings),
        lifespan=lifespan,
    )
