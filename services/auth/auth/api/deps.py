"""Dependencies that carry the request's context into the routes."""

import re
from typing import Annotated

from common.db import SessionDep
from common.errors import AuthenticationFailed, PermissionDenied, ValidationFailed
from common.openapi import raises
from common.paths import DIGITS_ONLY
from common.tokens import CurrentPrincipal, TokenVerifier
from fastapi import Depends, Path, Query, Request
from pydantic import WithJsonSchema

from auth import crud
from auth.keys import KeyRing
from auth.models import NULL_CHARACTER, SCHEMA_NAME, Role, User
from auth.passwords import PasswordHasher
from auth.settings import AuthSettings
from auth.tenants_client import TenantsClient
from auth.tokens import Signer

# What a tenant's domain_url can be: anything else in Host is not worth a registry lookup.
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


# What the lifespan put on ``app.state``; ``async def`` (no I/O), so FastAPI calls them inline.


async def get_settings(request: Request) -> AuthSettings:
    settings: AuthSettings = request.app.state.settings
    return settings


async def get_keys(request: Request) -> KeyRing:
    keys: KeyRing = request.app.state.keys
    return keys


async def get_signer(request: Request) -> Signer:
    """The key to sign with now (a rotation swaps it)."""
    keys: KeyRing = request.app.state.keys
    return keys.signer


async def get_tenants(request: Request) -> TenantsClient:
    tenants: TenantsClient = request.app.state.tenants
    return tenants


async def get_hasher(request: Request) -> PasswordHasher:
    hasher: PasswordHasher = request.app.state.hasher
    return hasher


async def get_verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier


SettingsDep = Annotated[AuthSettings, Depends(get_settings)]
KeysDep = Annotated[KeyRing, Depends(get_keys)]
SignerDep = Annotated[Signer, Depends(get_signer)]
TenantsDep = Annotated[TenantsClient, Depends(get_tenants)]
HasherDep = Annotated[PasswordHasher, Depends(get_hasher)]
VerifierDep = Annotated[TokenVerifier, Depends(get_verifier)]


async def get_current_user(session: SessionDep, principal: CurrentPrincipal) -> User:
    """The caller's account; a token of a deleted or deactivated user is refused (401)."""
    user = await crud.get_user(session=session, user_id=principal.user_id)
    if user is None:
        raise AuthenticationFailed("User not found")
    if not user.is_active:
        raise AuthenticationFailed("User is inactive")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


@raises(403)
async def get_admin_user(user: CurrentUser) -> User:
    """A tenant admin or a superuser (403 for staff)."""
    if not (user.is_superuser or user.role == Role.ADMIN):
        raise PermissionDenied()
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]


def _host_without_port(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal: [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0].rstrip(".")


def _unknown_tenant(schema_name: str) -> ValidationFailed:
    return ValidationFailed({"tenant": f'Unknown or inactive tenant "{schema_name[:63]}".'})


async def require_active_tenant(tenants: TenantsClient, schema_name: str) -> str:
    """``schema_name`` if it names an active tenant (asked of the registry, uncached); a 400
    on ``tenant`` otherwise. The default tenant always is (it cannot be deleted)."""
    if schema_name == tenants.default_tenant:
        return schema_name
    tenant = await tenants.by_schema_name(schema_name) if SCHEMA_NAME.match(schema_name) else None
    if tenant is None or not tenant.is_active:
        raise _unknown_tenant(schema_name)
    return tenant.schema_name


async def registration_tenant(
    request: Request, tenants: TenantsClient, x_tenant: str | None
) -> str:
    """The tenant a registration without an invitation joins: ``X-Tenant``, else the Host's
    tenant, else the default one."""
    if x_tenant is not None and x_tenant.strip():
        return await require_active_tenant(tenants, x_tenant.strip())
    host = _host_without_port(request.headers.get("host", ""))
    tenant = await tenants.by_domain(host) if HOSTNAME.match(host) else None
    if tenant is None:
        return tenants.default_tenant
    if not tenant.is_active:
        # The host names a deleted practice: joining the default tenant instead would be a
        # silent move into another tenant.
        raise _unknown_tenant(tenant.schema_name)
    return tenant.schema_name


@raises(400)
async def tenant_filter(
    tenant: Annotated[
        str | None,
        Query(description="schema_name (superusers only)"),
        # Any text but a NUL (a 400: PostgreSQL refuses it in a parameter).
        WithJsonSchema({"type": "string", "pattern": r"^[^\x00]*$"}),
    ] = None,
) -> str | None:
    """A list's ``?tenant=`` (a schema_name; honoured for superusers only), or None."""
    value = (tenant or "").strip()
    if "\x00" in value:  # PostgreSQL refuses NUL in a parameter: a 500 otherwise
        raise ValidationFailed({"tenant": NULL_CHARACTER})
    return value or None


TenantFilter = Annotated[str | None, Depends(tenant_filter)]

# Ids are 32-bit integers in both databases: a larger one names nothing (404, as a non-number),
# and must not reach PostgreSQL, which would refuse the parameter (a 500).
RecordId = Annotated[int, DIGITS_ONLY, Path(ge=1, le=2**31 - 1)]
