"""The clinic service app: ``uvicorn clinic.main:create_app --factory --port $CLINIC_PORT``."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from common.app import create_app as create_service_app
from common.db import is_unavailable
from common.tokens import TokenVerifier
from fastapi import FastAPI

from clinic import __version__
from clinic.api import audit_events, cabinets, consultations, patients
from clinic.audit import AuditTrail
from clinic.db import TenantDatabases, tenant_databases
from clinic.settings import ClinicSettings, get_settings

log = logging.getLogger("dentiapro.clinic")


async def _check_database(app: FastAPI) -> None:
    databases: TenantDatabases = app.state.databases
    await databases.check()


def _check_audit(app: FastAPI) -> None:
    trail: AuditTrail = app.state.audit
    trail.check()


def create_app(
    settings: ClinicSettings | None = None, *, token_verifier: TokenVerifier | None = None
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One "tenant provisioned" line of ours says it; Alembic's per-step lines are noise.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        databases = app.state.databases = tenant_databases(settings)
        # Only the default tenant at start-up: others migrate on their first request, so a
        # restart never waits on hundreds of schemas. A database that is down must not stop
        # the service from starting: /health/ reports it and requests get 503 until it is back.
        try:
            await databases.ensure_tenant(databases.default_tenant)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.warning("default tenant not provisioned at start-up: %s", type(exc).__name__)
        # Read events are buffered and written about every second, and at shutdown.
        app.state.audit = AuditTrail(databases, settings.audit_flush_interval)
        try:
            async with app.state.audit.running():
                yield
        finally:
            await databases.dispose()

    return create_service_app(
        service="clinic",
        version=__version__,
        settings=settings,
        routers=[patients.router, consultations.router, cabinets.router, audit_events.router],
        jwks_url=settings.jwks_url,
        token_verifier=token_verifier,
        lifespan=lifespan,
        health_checks={"database": _check_database, "audit": _check_audit},
    )
