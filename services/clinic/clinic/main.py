"""The clinic service app: ``uvicorn clinic.main:create_app --factory --port $CLINIC_PORT``."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from common.app import create_app as create_service_app
from common.errors import ServiceUnavailable
from common.tokens import (
    TokenVerifier,
    http_jwks_source,
    jwks_health_check,
    keys_prefetched,
)
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc

from clinic import __version__
from clinic.api import cabinets, consultations, patients
from clinic.db import TenantDatabases, tenant_databases
from clinic.settings import ClinicSettings, get_settings

log = logging.getLogger("dentiapro.clinic")


def _check_database(app: FastAPI) -> None:
    databases: TenantDatabases = app.state.databases
    databases.check()


def _provision_default_tenant(databases: TenantDatabases) -> None:
    # Only the default tenant at start-up: others migrate on their first request, so a
    # restart never waits on hundreds of schemas. A database that is down must not stop the
    # service from starting: /health/ reports it and requests get 503 until it is back.
    try:
        databases.ensure_tenant(databases.default_tenant)
    except (sa_exc.OperationalError, sa_exc.InterfaceError, ServiceUnavailable) as exc:
        log.warning("default tenant not provisioned at start-up: %s", type(exc).__name__)


def create_app(
    settings: ClinicSettings | None = None, *, token_verifier: TokenVerifier | None = None
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One "tenant provisioned" line of ours says it; Alembic's per-step lines are noise.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        verifier = token_verifier or TokenVerifier(
            http_jwks_source(settings.jwks_url),
            issuer=settings.jwt_issuer,
            refetch_interval=settings.jwks_refetch_interval,
        )
        app.state.token_verifier = verifier
        databases = tenant_databases(settings)
        app.state.databases = databases
        await asyncio.to_thread(_provision_default_tenant, databases)
        try:
            async with keys_prefetched(verifier, settings.jwks_refetch_interval):
                yield
        finally:
            databases.dispose()

    return create_service_app(
        service="clinic",
        version=__version__,
        settings=settings,
        routers=[cabinets.router, patients.router, consultations.router],
        lifespan=lifespan,
        health_checks={"database": _check_database, "jwks": jwks_health_check},
    )
