"""``/internal/tenants/resolve/`` and ``/status/``: tenant lookups for auth and the edge.

No token: the gateway routes no ``/internal/`` path, so only processes on the internal network
(auth on register and login, the edge on uncached tokens and its periodic refresh) reach them.
One query each.
"""

from common.db import SyncSessionDep
from common.errors import NotFound, ValidationFailed
from fastapi import APIRouter

from tenants import crud
from tenants.models import TenantResolution, TenantStatuses

router = APIRouter(prefix="/internal/tenants", tags=["internal"])

ONE_PARAMETER = "Give exactly one of the schema_name or domain query parameters."


@router.get("/resolve/")
def resolve_tenant(
    session: SyncSessionDep, schema_name: str | None = None, domain: str | None = None
) -> TenantResolution:
    """A tenant by schema_name (live or deleted) or by domain (live only)."""
    schema_name = (schema_name or "").strip() or None
    domain = (domain or "").strip() or None
    if (schema_name is None) == (domain is None):
        raise ValidationFailed({"non_field_errors": [ONE_PARAMETER]})
    if schema_name is not None:
        tenant = crud.get_tenant_by_schema_name(session=session, schema_name=schema_name)
    else:
        assert domain is not None
        tenant = crud.get_tenant_by_domain(session=session, domain=domain)
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
def tenant_statuses(session: SyncSessionDep) -> TenantStatuses:
    """Every tenant (live or deleted) as schema_name → is_active: one request per edge refresh
    instead of one resolve per tenant."""
    return TenantStatuses(tenants=crud.tenant_statuses(session=session))
