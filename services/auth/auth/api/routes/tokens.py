"""Registration, login, token refresh, logout and the JWKS: the routes that need no token."""

from contextlib import suppress
from typing import Annotated, Any

from common.address import ClientAddress, throttle_key
from common.db import SessionDep
from common.errors import AuthenticationFailed, Throttled, TokenInvalid
from common.openapi import errors
from common.tokens import TokenVerifier
from fastapi import APIRouter, Header, Request, Response, status
from sqlmodel.ext.asyncio.session import AsyncSession

from auth import crud
from auth.api.deps import (
    HasherDep,
    KeysDep,
    SettingsDep,
    SignerDep,
    TenantsDep,
    VerifierDep,
    registration_tenant,
    require_active_tenant,
)
from auth.api.routes import RATE_LIMITED
from auth.metrics import LOGINS
from auth.models import (
    LoginRequest,
    RefreshRequest,
    RefreshToken,
    TokenPair,
    User,
    UserPublic,
    UserRegister,
)

router = APIRouter(prefix="/api/auth", tags=["auth"], responses=RATE_LIMITED)

NO_ACTIVE_ACCOUNT = "No active account found with the given credentials"


@router.post("/register/", status_code=status.HTTP_201_CREATED, response_model=UserPublic)
async def register(
    data: UserRegister,
    request: Request,
    session: SessionDep,
    tenants: TenantsDep,
    hasher: HasherDep,
    settings: SettingsDep,
    address: ClientAddress,
    x_tenant: Annotated[
        str | None,
        Header(description="schema_name of the tenant to join (without an invitation)."),
    ] = None,
) -> User:
    """Create an account. With an `invitation`: active, with the invited role, in the invited
    tenant. Without: pending staff (`is_active: false`) until an admin of the tenant activates
    it, in the tenant `X-Tenant` names, else the Host's, else the default one. At most
    `REGISTRATIONS_PER_ADDRESS` per client address within `REGISTRATION_WINDOW` (then 429)."""
    await crud.record_registration_attempt(
        session=session, address=throttle_key(address), settings=settings
    )
    if data.invitation is None:
        tenant = await registration_tenant(request, tenants, x_tenant)
        return await crud.create_user(session=session, data=data, tenant=tenant, hasher=hasher)
    invitation = await crud.get_invitation(session=session, token=data.invitation, email=data.email)
    # The invited tenant may have been deleted since: asked now, never cached.
    tenant = await require_active_tenant(tenants, invitation.tenant)
    return await crud.create_user(
        session=session, data=data, tenant=tenant, hasher=hasher, invitation=invitation
    )


@router.post("/login/", responses=errors(401))
async def login(
    data: LoginRequest,
    session: SessionDep,
    settings: SettingsDep,
    signer: SignerDep,
    tenants: TenantsDep,
    address: ClientAddress,
    hasher: HasherDep,
) -> TokenPair:
    """Exchange a username and password for an access and a refresh token."""
    try:
        attempt_id = await crud.start_login_attempt(
            session=session,
            username=data.username,
            address=throttle_key(address),
            settings=settings,
        )
    except Throttled:
        LOGINS.labels("throttled").inc()
        raise
    # From here the attempt counts as a failure unless it succeeds.
    try:
        user = await crud.authenticate(
            session=session, username=data.username, password=data.password, hasher=hasher
        )
        if user is None or not user.is_active:
            refused = "bad_credentials"
        else:
            refused = "" if await tenants.is_active(user.tenant) else "inactive_tenant"
    except Exception:
        # Not judged (the tenants registry or the database did not answer): no failure.
        with suppress(Exception):
            await session.rollback()
            await crud.forget_login_attempt(session=session, attempt_id=attempt_id)
        raise
    if refused or user is None:
        LOGINS.labels(refused).inc()
        raise AuthenticationFailed(NO_ACTIVE_ACCOUNT)
    await crud.forget_login_attempt(session=session, attempt_id=attempt_id, commit=False)
    LOGINS.labels("success").inc()
    return await crud.issue_token_pair(session=session, signer=signer, user=user, settings=settings)


async def _recorded_refresh_token(
    session: AsyncSession, verifier: TokenVerifier, token: str
) -> RefreshToken:
    try:
        claims = await verifier.verify_async(token, token_type="refresh")
    except TokenInvalid:
        raise TokenInvalid(crud.TOKEN_INVALID) from None
    return await crud.get_refresh_token(session=session, jti=str(claims["jti"]))


@router.post("/refresh/", responses=errors(401))
async def refresh(
    data: RefreshRequest,
    session: SessionDep,
    settings: SettingsDep,
    signer: SignerDep,
    verifier: VerifierDep,
    tenants: TenantsDep,
) -> TokenPair:
    """Rotate a refresh token: a new pair in the same family; the old token is revoked."""
    token = await _recorded_refresh_token(session, verifier, data.refresh)
    user = await crud.get_user(session=session, user_id=token.user_id)
    # Checked before the token is used up, so a 503 from the tenants service costs nothing.
    if user is None or not user.is_active or not await tenants.is_active(user.tenant):
        await crud.revoke_refresh_family(session=session, family_id=token.family_id)
        raise TokenInvalid(crud.TOKEN_INVALID)
    return await crud.rotate_refresh_token(
        session=session, token=token, signer=signer, user=user, settings=settings
    )


@router.post("/logout/", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401))
async def logout(data: RefreshRequest, session: SessionDep, verifier: VerifierDep) -> Response:
    """Revoke the refresh token's whole family. The refresh token is the credential."""
    token = await _recorded_refresh_token(session, verifier, data.refresh)
    await crud.revoke_refresh_family(session=session, family_id=token.family_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/jwks/")
async def jwks(session: SessionDep, keys: KeysDep) -> dict[str, Any]:
    """The public keys that verify tokens signed by this service (JWKS): the current key and
    every previous one whose tokens have not all expired yet."""
    # No HTTP caching (every /api/ response is no-store): verifiers cache the keys themselves
    # and refetch on an unknown kid, which is how they learn a rotated key at once.
    return await keys.jwks(session)
