"""The caller's account and user administration (tenant admins: their tenant; superusers: all)."""

from common.db import SessionDep
from common.errors import NotFound
from common.listing import ListQueryDep, PageResult
from common.pagination import Page
from common.tokens import get_principal
from fastapi import APIRouter, Depends

from auth import crud
from auth.api.deps import AdminUser, CurrentUser, RecordId, TenantFilter
from auth.api.routes import RATE_LIMITED
from auth.models import User, UserDetail, UserUpdate

# Authentication at router level: every route added here needs a valid access token.
router = APIRouter(
    prefix="/api/auth",
    tags=["users"],
    dependencies=[Depends(get_principal)],
    responses=RATE_LIMITED,
)


@router.get("/me/", response_model=UserDetail)
async def get_me(user: CurrentUser) -> User:
    """The account the access token belongs to."""
    return user


@router.get("/users/", response_model=Page[UserDetail])
async def list_users(
    session: SessionDep,
    admin: AdminUser,
    query: ListQueryDep,
    tenant: TenantFilter,
) -> PageResult:
    """Users of the caller's tenant; a superuser sees every tenant's, or one's with ``?tenant=``.

    ``?search=`` looks in username and email.
    """
    if admin.is_superuser:
        scope = crud.UserScope(tenant=tenant, include_superusers=True)
    else:
        scope = crud.UserScope(tenant=admin.tenant, include_superusers=False)
    return await crud.list_users(session=session, scope=scope, query=query)


@router.patch("/users/{user_id}/", response_model=UserDetail)
async def update_user(
    user_id: RecordId, data: UserUpdate, session: SessionDep, admin: AdminUser
) -> User:
    """Activate or deactivate a user, or change its role (admin | staff)."""
    user = await crud.get_user(session=session, user_id=user_id)
    # Another tenant's user, or a superuser, is invisible to a tenant admin: 404, as if absent.
    hidden = user is None or (
        not admin.is_superuser and (user.tenant != admin.tenant or user.is_superuser)
    )
    if user is None or hidden:
        raise NotFound()
    return await crud.update_user(session=session, user=user, data=data, actor=admin)
