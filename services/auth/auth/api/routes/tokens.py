"""Registration, login, token refresh, logout and the JWKS: the routes that need no token."""

from contextlib import suppress
from typing import Any

from common.db import SyncSessionDep
from common.errors import AuthenticationFailed, Throttled, TokenInvalid
from common.tokens import TokenVerifier
from fastapi import APIRouter, Response, status
from sqlmodel import Session

from auth import crud
from auth.api.deps import (
    ClientAddress,
    HasherDep,
    RegistrationTenant,
    SettingsDep,
    SignerDep,
    TenantsDep,
    VerifierDep,
)
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

router = APIRouter(prefix="/api/auth", tags=["auth"])

NO_ACTIVE_ACCOUNT = "No active account found with the given credentials"


@router.post("/register/", status_code=status.HTTP_201_CREATED, response_model=UserPublic)
def register(
    data: UserRegister, session: SyncSessionDep, tenant: RegistrationTenant, hasher: HasherDep
) -> User:
    """Create an account: a tenant's first user becomes its admin, later ones wait for one."""
    return crud.create_user(session=session, data=data, tenant=tenant, hasher=hasher)


@router.post("/login/")
def login(
    data: LoginRequest,
    session: SyncSessionDep,
    settings: SettingsDep,
    signer: SignerDep,
    tenants: TenantsDep,
    address: ClientAddress,
    hasher: HasherDep,
) -> TokenPair:
    """Exchange a username and password for an access and a refresh token."""
    try:
        attempt_id = crud.start_login_attempt(
            session=session, username=data.username, address=address, settings=settings
        )
    except Throttled:
        LOGINS.labels("throttled").inc()
        raise
    # From here the attempt counts as a failure unless it succeeds.
    try:
        user = crud.authenticate(
            session=session, username=data.username, password=data.password, hasher=hasher
        )
        if user is None or not user.is_active:
            refused = "bad_credentials"
        else:
            refused = "" if tenants.is_active(user.tenant) else "inactive_tenant"
    except Exception:
        # Not judged (the tenants registry or the database did not answer): no failure.
        with suppress(Exception):
            session.rollback()
            crud.forget_login_attempt(session=session, attempt_id=attempt_id)
        raise
    if refused or user is None:
        LOGINS.labels(refused).inc()
        raise AuthenticationFailed(NO_ACTIVE_ACCOUNT)
    crud.forget_login_attempt(session=session, attempt_id=attempt_id, commit=False)
    LOGINS.labels("success").inc()
    return crud.issue_token_pair(session=session, signer=signer, user=user, settings=settings)


def _recorded_refresh_token(session: Session, verifier: TokenVerifier, token: str) -> RefreshToken:
    try:
        claims = verifier.verify(token, token_type="refresh")
    except TokenInvalid:
        raise TokenInvalid(crud.TOKEN_INVALID) from None
    return crud.get_refresh_token(session=session, jti=str(claims["jti"]))


@router.post("/refresh/")
def refresh(
    data: RefreshRequest,
    session: SyncSessionDep,
    settings: SettingsDep,
    signer: SignerDep,
    verifier: VerifierDep,
    tenants: TenantsDep,
) -> TokenPair:
    """Rotate a refresh token: a new pair in the same family; the old token is revoked."""
    token = _recorded_refresh_token(session, verifier, data.refresh)
    user = crud.get_user(session=session, user_id=token.user_id)
    # Checked before the token is used up, so a 503 from the tenants service costs nothing.
    if user is None or not user.is_active or not tenants.is_active(user.tenant):
        crud.revoke_refresh_family(session=session, family_id=token.family_id)
        raise TokenInvalid(crud.TOKEN_INVALID)
    crud.consume_refresh_token(session=session, token=token)
    return crud.issue_token_pair(
        session=session, signer=signer, user=user, settings=settings, family_id=token.family_id
    )


@router.post("/logout/", status_code=status.HTTP_204_NO_CONTENT)
def logout(data: RefreshRequest, session: SyncSessionDep, verifier: VerifierDep) -> Response:
    """Revoke the refresh token's whole family. The refresh token is the credential."""
    token = _recorded_refresh_token(session, verifier, data.refresh)
    crud.revoke_refresh_family(session=session, family_id=token.family_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/jwks/")
def jwks(signer: SignerDep, response: Response) -> dict[str, Any]:
    """The public keys that verify tokens signed by this service (JWKS)."""
    # Verifiers cache keys anyway and refetch on an unknown kid; let HTTP caches help too.
    response.headers["Cache-Control"] = "public, max-age=300"
    return signer.jwks()
