"""/api/auth/invitations/: how a tenant's members join (DESIGN section 3).

A tenant admin invites into its own tenant; a superuser into any (``tenant``, a schema_name).
The token is shown once, in the answer to the creation; a registration that presents it (with
the invited email) creates the account, active, with the invited role.
"""

from common.db import SessionDep
from common.errors import NotFound, ValidationFailed
from common.listing import ListQueryDep, PageResult
from common.pagination import Page
from common.tokens import get_principal
from fastapi import APIRouter, Depends, Response, status

from auth import crud
from auth.api.deps import (
    AdminUser,
    RecordId,
    SettingsDep,
    TenantFilter,
    TenantsDep,
    require_active_tenant,
)
from auth.api.routes import RATE_LIMITED
from auth.models import InvitationCreate, InvitationCreated, InvitationPublic

router = APIRouter(
    prefix="/api/auth/invitations",
    tags=["invitations"],
    dependencies=[Depends(get_principal)],
    responses=RATE_LIMITED,
)

OTHER_TENANT = "Only a superuser can invite into another tenant."


@router.post("/", status_code=status.HTTP_201_CREATED, response_model=InvitationCreated)
async def create_invitation(
    data: InvitationCreate,
    session: SessionDep,
    admin: AdminUser,
    tenants: TenantsDep,
    settings: SettingsDep,
) -> InvitationCreated:
    """Invite `email` into a tenant with `role`; the answer holds the token (shown only here)."""
    tenant = data.tenant or admin.tenant
    if not admin.is_superuser and tenant != admin.tenant:
        raise ValidationFailed({"tenant": OTHER_TENANT})
    if admin.is_superuser:
        tenant = await require_active_tenant(tenants, tenant)
    invitation, token = await crud.create_invitation(
        session=session,
        email=data.email,
        role=data.role,
        tenant=tenant,
        lifetime=settings.invitation_lifetime,
        created_by=admin.id,
    )
    return InvitationCreated.model_validate({**invitation.model_dump(), "token": token})


@router.get("/", response_model=Page[InvitationPublic])
async def list_invitations(
    session: SessionDep, admin: AdminUser, query: ListQueryDep, tenant: TenantFilter
) -> PageResult:
    """The open invitations (neither used, revoked nor expired) of the caller's tenant; a
    superuser sees every tenant's, or one's with `?tenant=`. No tokens."""
    scope = tenant if admin.is_superuser else admin.tenant
    return await crud.list_invitations(session=session, tenant=scope, query=query)


@router.delete("/{invitation_id}/", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_invitation(invitation_id: RecordId, session: SessionDep, admin: AdminUser) -> None:
    """Revoke an open invitation; another tenant's is a 404, as if it did not exist."""
    invitation = await crud.get_open_invitation(
        session=session,
        invitation_id=invitation_id,
        tenant=None if admin.is_superuser else admin.tenant,
    )
    if invitation is None:
        raise NotFound()
    await crud.revoke_invitation(session=session, invitation=invitation)
