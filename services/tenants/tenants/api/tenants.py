"""``/api/tenants/``: the tenant registry, for platform superusers only."""

from common.db import SessionDep
from common.listing import ListQueryDep, PageResult
from common.openapi import errors
from common.pagination import Page
from common.tokens import require_superuser
from fastapi import APIRouter, Depends, Response

from tenants import crud
from tenants.api.deps import SettingsDep, TenantDep
from tenants.models import Tenant, TenantCreate, TenantPublic, TenantReplace, TenantUpdate

# Router-level: every route here, present and future, needs a superuser token.
router = APIRouter(
    prefix="/api/tenants", tags=["tenants"], dependencies=[Depends(require_superuser)]
)


@router.get("/", response_model=Page[TenantPublic])
async def list_tenants(query: ListQueryDep, session: SessionDep) -> PageResult:
    """List live tenants (search on name, schema_name, domain_url)."""
    return await crud.list_tenants(session=session, query=query)


@router.post("/", status_code=201, response_model=TenantPublic)
async def create_tenant(
    tenant_in: TenantCreate, session: SessionDep, settings: SettingsDep
) -> Tenant:
    """Register a tenant; its schema_name is fixed for ever."""
    return await crud.create_tenant(
        session=session, data=tenant_in, default_schema=settings.default_tenant
    )


@router.get("/{tenant_id}/", response_model=TenantPublic)
async def get_tenant(tenant: TenantDep) -> Tenant:
    """One tenant."""
    return tenant


@router.put("/{tenant_id}/", response_model=TenantPublic)
async def update_tenant(tenant: TenantDep, tenant_in: TenantReplace, session: SessionDep) -> Tenant:
    """Replace a tenant's writable fields (schema_name must stay the same)."""
    return await crud.update_tenant(session=session, tenant=tenant, data=tenant_in)


@router.patch("/{tenant_id}/", response_model=TenantPublic)
async def patch_tenant(tenant: TenantDep, changes: TenantUpdate, session: SessionDep) -> Tenant:
    """Change some of a tenant's fields (schema_name must stay the same)."""
    return await crud.update_tenant(session=session, tenant=tenant, data=changes)


@router.delete("/{tenant_id}/", status_code=204, response_class=Response, responses=errors(409))
async def delete_tenant(tenant: TenantDep, session: SessionDep, settings: SettingsDep) -> None:
    """Hide a tenant; its data and its schema_name stay (the default tenant cannot go)."""
    await crud.delete_tenant(session=session, tenant=tenant, default_schema=settings.default_tenant)
