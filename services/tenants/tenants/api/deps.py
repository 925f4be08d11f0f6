"""What the tenant routes depend on: settings, the tenant named in the path."""

from typing import Annotated

from common.db import SessionDep
from common.errors import NotFound
from common.paths import DIGITS_ONLY
from fastapi import Depends, Path, Request

from tenants import crud
from tenants.models import Tenant
from tenants.settings import TenantsSettings


async def get_settings(request: Request) -> TenantsSettings:
    settings: TenantsSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[TenantsSettings, Depends(get_settings)]


# Tenant ids are 32-bit integers in both databases: a larger one names nothing (a 404 like any
# other), and must not reach PostgreSQL, which refuses the parameter (it was a 500).
MAX_TENANT_ID = 2**31 - 1
TenantId = Annotated[int, DIGITS_ONLY, Path(ge=1, le=MAX_TENANT_ID)]


async def get_tenant(tenant_id: TenantId, session: SessionDep) -> Tenant:
    tenant = await crud.get_tenant(session=session, tenant_id=tenant_id)
    if tenant is None:
        raise NotFound()
    return tenant


TenantDep = Annotated[Tenant, Depends(get_tenant)]
