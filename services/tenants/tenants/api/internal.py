"""``/internal/tenants/resolve/`` and ``/status/``: tenant lookups for auth and the gateway.

The gateway routes no ``/internal/`` path, and every caller must also present the shared
secret (``X-Internal-Token``: ``DENTIAPRO_INTERNAL_TOKEN``): a pod or process that can reach
this port but holds no secret learns nothing. One query each.
"""

import hmac
from typing import Annotated

from common.db import SessionDep
from common.errors import NotAuthenticated, NotFound, PermissionDenied, ValidationFailed
from fastapi import APIRouter, Depends, Header, Request

from tenants import crud
from tenants.models import TenantResolution, TenantStatuses
from tenants.settings import TenantsSettings

ONE_PARAMETER = "Give exactly one of the schema_name or domain query parameters."
NO_CREDENTIAL = "Internal API credential not provided."
NOT_CONFIGURED = "The internal API is closed: no credential is configured."


async def require_internal_token(
    request: Request,
    x_internal_token: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """The caller holds the shared secret (compared in constant time)."""
    settings: TenantsSettings = request.app.state.settings
    if settings.internal_token is None:
        raise PermissionDenied(NOT_CONFIGURED)
    if x_internal_token is None:
        raise NotAuthenticated(NO_CREDENTIAL)
    expected = settings.internal_token.get_secret_value().encode()
    if not hmac.compare_digest(x_internal_token.encode("utf-8", "replace"), expected):
        raise PermissionDenied()


router = APIRouter(
    prefix="/internal/tenants",
    tags=["internal"],
    dependencies=[Depends(require_internal_token)],
    include_in_schema=False,
)


@router.get("/resolve/")
async def resolve_tenant(
    session: SessionDep, schema_name: str | None = None, domain: str | None = None
) -> TenantResolution:
    """A tenant by schema_name (live or deleted) or by domain (live only)."""
    schema_name = (schema_name or "").strip() or None
    domain = (domain or "").strip() or None
    if (schema_name is None) == (domain is None):
        raise ValidationFailed({"non_field_errors": [ONE_PARAMETER]})
    if schema_name is not None:
        tenant = await crud.get_tenant_by_schema_name(session=session, schema_name=schema_name)
    else:
        assert domain is not None
        tenant = await crud.get_tenant_by_domain(session=session, domain=domain)
    if tenant is None or tenant.id is None:
        raise NotFound()
    return TenantResolution(
        id=tenant.id,
        name=tenant.name,
        schema_name=tenant.schema_name,
        domain_url=tenant.domain_url,
        is_active=tenant.is_active,
    )


@router.get("/status/")
async def tenant_statuses(session: SessionDep) -> TenantStatuses:
    """Every tenant (live or deleted) as schema_name → is_active: one request per gateway
    refresh instead of one resolve per tenant."""
    return TenantStatuses(tenants=await crud.tenant_statuses(session=session))
