"""The auth service: ``uvicorn auth.main:create_app --factory``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from common.app import create_app as create_service_app
from common.db import ping
from common.observability import track_engine
from fastapi import FastAPI
from sqlmodel import Session

from auth import __version__, crud
from auth.api import routers
from auth.db import create_engine, upgrade
from auth.passwords import PasswordHasher
from auth.settings import AuthSettings, get_settings
from auth.tenants_client import TenantsClient
from auth.tokens import Signer, configured_private_pem


def _start(app: FastAPI, settings: AuthSettings) -> None:
    """Migrate, load the signing key and ensure the superuser, before the first request."""
    hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_cost,
        parallelism=settings.argon2_parallelism,
        max_concurrent=settings.argon2_max_concurrent,
    )
    engine = create_engine(settings)
    track_engine(engine)
    upgrade(engine)
    with Session(engine) as session:
        pem = configured_private_pem(settings) or crud.get_or_create_signing_pem(session=session)
        if settings.admin_username and settings.admin_password:
            crud.ensure_superuser(
                session=session,
                username=settings.admin_username,
                password=settings.admin_password.get_secret_value(),
                tenant=settings.default_tenant,
                hasher=hasher,
            )
    signer = Signer.from_pem(pem, issuer=settings.jwt_issuer)
    app.state.engine = engine
    app.state.hasher = hasher
    app.state.signer = signer
    app.state.token_verifier = signer.verifier()


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _start(app, settings)
        try:
            with httpx.Client(timeout=settings.tenants_timeout) as http:
                app.state.tenants = TenantsClient(
                    http,
                    settings.tenants_url,
                    default_tenant=settings.default_tenant,
                    cache_seconds=settings.tenant_cache_seconds,
                    internal_token=(
                        settings.internal_token.get_secret_value()
                        if settings.internal_token
                        else None
                    ),
                )
                yield
        finally:
            app.state.engine.dispose()
            app.state.hasher.close()

    return create_service_app(
        service="auth",
        version=__version__,
        settings=settings,
        routers=routers,
        lifespan=lifespan,
        health_checks={"database": lambda app: ping(app.state.engine)},
    )
