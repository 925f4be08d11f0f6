"""``/api/tenants/``: the tenant registry, for platform superusers only."""

from common.db import SyncSessionDep
from common.listing import ListFiltersDep
from common.pagination import Page, PageDep
from common.tokens import require_superuser
from fastapi import APIRouter, Depends, Response

from tenants import crud
from tenants.api.deps import SettingsDep, TenantDep
from tenants.models import TenantCreate, TenantPublic, TenantReplace, TenantUpdate

# Router-level: every route here, present and future, needs a superuser token.
router = APIRouter(
    prefix="/api/tenants", tags=["tenants"], dependencies=[Depends(require_superuser)]
)


@router.get("/")
def list_tenants(
    session: SyncSessionDep, paging: PageDep, filters: ListFiltersDep
) -> Page[TenantPublic]:
    """List live tenants (search on name, schema_name, domain_url)."""
    count = crud.count_tenants(session=session, filters=filters)
    number = paging.number(count)
    tenants = crud.list_tenants(
        session=session, filters=filters, offset=paging.offset(number), limit=paging.size
    )
    return paging.envelope(number, count, [TenantPublic.model_validate(t) for t in tenants])


@router.post("/", status_code=201)
def create_tenant(
    data: TenantCreate, session: SyncSessionDep, settings: SettingsDep
) -> TenantPublic:
    """Register a tenant; its schema_name is fixed for ever."""
    tenant = crud.create_tenant(session=session, data=data, default_schema=settings.default_tenant)
    return TenantPublic.model_validate(tenant)


@router.get("/{tenant_id}/")
def get_tenant(tenant: TenantDep) -> TenantPublic:
    """One tenant."""
    return TenantPublic.model_validate(tenant)


@router.put("/{tenant_id}/")
def update_tenant(tenant: TenantDep, data: TenantReplace, session: SyncSessionDep) -> TenantPublic:
    """Replace a tenant's writable fields (schema_name must stay the same)."""
    tenant = crud.update_tenant(session=session, tenant=tenant, data=data)
    return TenantPublic.model_validate(tenant)


@router.patch("/{tenant_id}/")
def partial_update_tenant(
    tenant: TenantDep, data: TenantUpdate, session: SyncSessionDep
) -> TenantPublic:
    """Change some of a tenant's fields (schema_name must stay the same)."""
    tenant = crud.update_tenant(session=session, tenant=tenant, data=data)
    return TenantPublic.model_validate(tenant)


@router.delete("/{tenant_id}/", status_code=204)
def delete_tenant(tenant: TenantDep, session: SyncSessionDep, settings: SettingsDep) -> Response:
    """Hide a tenant; its data and its schema_name stay (the default tenant cannot go)."""
    crud.delete_tenant(session=session, tenant=tenant, default_schema=settings.default_tenant)
    return Response(status_code=204)
