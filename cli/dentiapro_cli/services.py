"""The one place that knows how the services' own code is called.

The commands import this module when they run (not for ``--help``, which stays instant).
Migrations are synchronous (Alembic on psycopg2 or sqlite3), whatever the services serve with.
The tenants registry's ``crud`` is async, as the service serves it: each call runs with
``asyncio.run`` on a short-lived engine of one connection, as ``auth.invitations`` does.

Errors the commands report, beside the services' own (``auth.keys.KeyRotationError``):

    ValidationFailed  (common.errors) bad input, per field as the API's 400 words it;
                      nothing was written
    Unavailable       a database that cannot be used from here (unreachable, not migrated)
                      or a key file that cannot be read; the message says which and why
"""

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import auth.db
import auth.invitations
import auth.keys
import auth.settings
import clinic.schemas
import clinic.settings
import pydantic
import tenants.crud
import tenants.db
import tenants.settings
from auth.models import InvitationCreate, InvitationCreated
from auth.tokens import Signer
from common.db import UnsupportedDatabaseUrl, create_async_db_engine
from common.errors import ValidationFailed, validation_errors_to_fields
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel.ext.asyncio.session import AsyncSession
from tenants.models import Tenant, TenantCreate

# What a database that cannot be used raises: SQLAlchemy's errors, asyncpg's own OS-level
# errors and timeouts while connecting, and a URL of a backend DentiaPro does not serve.
DATABASE_ERRORS = (SQLAlchemyError, OSError, TimeoutError, UnsupportedDatabaseUrl)
BLANK = "This field may not be blank."
# SQLAlchemy wraps the driver's message between the driver's error class and a link to its
# error catalogue: noise in a summary.
_DRIVER_CLASS = re.compile(r"^\([\w.]+\) ")
_BACKGROUND = re.compile(r"\s*\(Background on this error at: [^)]*\)")


class Unavailable(Exception):
    """A database or file the command needs cannot be used; the message says what to do."""


def one_line(exc: BaseException) -> str:
    """``DatabaseError: file is not a database``: the error's type and first line."""
    lines = _BACKGROUND.sub("", str(exc)).strip().splitlines()
    first = _DRIVER_CLASS.sub("", lines[0]) if lines else ""
    return f"{type(exc).__name__}: {first}"[:300]


def _where(url: str) -> str:
    """A database URL fit for a message: without its password."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_file_missing(url: str) -> bool:
    """``url`` names an SQLite file that does not exist (connecting would create it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return False
    return not Path(parsed.database).exists()


def _fields(error: pydantic.ValidationError) -> ValidationFailed:
    """A model's validation error as the API's 400 body words it."""
    return ValidationFailed(validation_errors_to_fields(error.errors()))


async def _require_migrated(url: str, table: str, what: str, service: str) -> None:
    """``Unavailable`` unless the database at ``url`` can be reached and holds ``table``
    (its service's migrations have run). A missing SQLite file is not created by looking."""
    not_migrated = Unavailable(
        f"the {what} ({_where(url)}) is not migrated: run `dentiapro migrate` (or start "
        f"{service}) first"
    )
    if _sqlite_file_missing(url):
        raise not_migrated
    try:
        engine = create_async_db_engine(url, pool_size=1, max_overflow=0)
        try:
            async with engine.connect() as connection:
                found = await connection.run_sync(lambda sync: inspect(sync).has_table(table))
        finally:
            await engine.dispose()
    except DATABASE_ERRORS as exc:
        raise Unavailable(f"cannot reach the {what} ({_where(url)}): {one_line(exc)}") from exc
    if not found:
        raise not_migrated


def _require_auth_migrated(url: str, table: str) -> None:
    asyncio.run(_require_migrated(url, table, "auth database", "auth"))


# ---- migrations ---------------------------------------------------------------------------


def migrate_tenants_registry() -> None:
    """The tenants service's database (``TENANTS_DATABASE_URL``) to its latest revision."""
    tenants.db.migrate(tenants.settings.get_settings())


def migrate_auth() -> None:
    """The auth service's database (``AUTH_DATABASE_URL``) to its latest revision."""
    auth.db.migrate(auth.settings.get_settings())


@dataclass(frozen=True, slots=True)
class ClinicTenants:
    """The tenants that have clinic data (schemas or SQLite files), default tenant first,
    and how to bring one of them to the latest revision."""

    names: list[str]
    # Brings one tenant to the latest revision; True if any migration ran.
    migrate: Callable[[str], object]


@contextmanager
def clinic_tenants() -> Iterator[ClinicTenants]:
    """The clinic's tenant databases (``CLINIC_DATABASE_URL``), closed afterwards."""
    schemas = clinic.schemas.tenant_schemas(clinic.settings.get_settings())
    try:
        yield ClinicTenants(names=schemas.tenants(), migrate=schemas.upgrade)
    finally:
        schemas.dispose()


# ---- the tenants registry -----------------------------------------------------------------


def default_tenant() -> str:
    """The default tenant's schema_name (``DENTIAPRO_DEFAULT_TENANT``): it always exists."""
    return tenants.settings.get_settings().default_tenant


@asynccontextmanager
async def _registry() -> AsyncIterator[AsyncSession]:
    """A session on the tenants registry; ``Unavailable`` when it cannot be used."""
    url = tenants.settings.get_settings().database_url
    await _require_migrated(url, Tenant.__tablename__, "tenants registry", "the tenants service")
    engine = create_async_db_engine(url, pool_size=1, max_overflow=0)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            yield session
    except DATABASE_ERRORS as exc:
        raise Unavailable(f"the tenants registry ({_where(url)}) failed: {one_line(exc)}") from exc
    finally:
        await engine.dispose()


def list_tenants(*, include_deleted: bool) -> list[Tenant]:
    """The registry's live tenants (and its deleted ones with ``include_deleted``), by id."""

    async def run() -> list[Tenant]:
        async with _registry() as session:
            return await tenants.crud.all_tenants(session=session, include_deleted=include_deleted)

    return asyncio.run(run())


def find_tenant(schema_name: str) -> Tenant | None:
    """The tenant ``schema_name`` names, live or deleted; None if there is none."""

    async def run() -> Tenant | None:
        async with _registry() as session:
            return await tenants.crud.get_tenant_by_schema_name(
                session=session, schema_name=schema_name
            )

    return asyncio.run(run())


def create_tenant(*, schema_name: str, name: str, domain_url: str) -> Tenant:
    """Register a tenant by the rules of ``POST /api/tenants/`` (field shapes, reserved names,
    uniqueness); ``ValidationFailed`` per field, with nothing written, otherwise."""
    try:
        data = TenantCreate.model_validate(
            {"schema_name": schema_name, "name": name, "domain_url": domain_url}
        )
    except pydantic.ValidationError as exc:
        raise _fields(exc) from None

    async def run() -> Tenant:
        async with _registry() as session:
            return await tenants.crud.create_tenant(
                session=session, data=data, default_schema=default_tenant()
            )

    return asyncio.run(run())


# ---- auth: invitations and the signing key ------------------------------------------------


def invitation_request(*, email: str, role: str, tenant: str) -> InvitationCreate:
    """The invitation as the API would take it (``ValidationFailed`` per field otherwise)."""
    try:
        data = InvitationCreate.model_validate({"email": email, "role": role, "tenant": tenant})
    except pydantic.ValidationError as exc:
        raise _fields(exc) from None
    if data.tenant is None:  # the API's "the caller's tenant": an operator has none
        raise ValidationFailed({"tenant": [BLANK]})
    return data


def require_live_tenant(data: InvitationCreate) -> None:
    """The invitation's tenant is live in the registry, as ``POST /api/auth/invitations/``
    requires; ``ValidationFailed`` on ``tenant`` otherwise, saying whether it is unknown or
    deleted. The default tenant always is (the registry creates its row when it starts)."""
    if data.tenant is None or data.tenant == default_tenant():
        return
    found = find_tenant(data.tenant)
    if found is None:
        problem = (
            f'Unknown tenant "{data.tenant}": `dentiapro tenants list` shows the tenants, '
            "`dentiapro tenants create` adds one."
        )
        raise ValidationFailed({"tenant": [problem]})
    if found.deleted_at is not None:
        deleted = f"{found.deleted_at:%Y-%m-%d %H:%M} UTC"
        problem = f'Tenant "{data.tenant}" was deleted on {deleted}: nobody can join it.'
        raise ValidationFailed({"tenant": [problem]})


def invite(data: InvitationCreate) -> InvitationCreated:
    """Write the invitation into the auth database; its token is in the answer, this once."""
    settings = auth.settings.get_settings()
    _require_auth_migrated(settings.database_url, "invitation")
    assert data.tenant is not None  # invitation_request made sure
    try:
        return auth.invitations.invite(
            settings, email=data.email, role=data.role, tenant=data.tenant
        )
    except pydantic.ValidationError as exc:
        raise _fields(exc) from None
    except DATABASE_ERRORS as exc:
        raise Unavailable(_auth_failed(settings.database_url, exc)) from exc


def _auth_failed(url: str, exc: BaseException) -> str:
    return f"cannot write to the auth database ({_where(url)}): {one_line(exc)}"


def auth_settings() -> auth.settings.AuthSettings:
    """auth's settings, as auth reads them from this environment."""
    return auth.settings.get_settings()


def rotate_signing_key() -> auth.keys.RotatedKey:
    """A new signing key, published, then written over the key file auth reads.

    ``KeyRotationError`` when it cannot be done from here (the key comes from
    ``JWT_PRIVATE_KEY``, its file is read-only, or there is no key file yet: a key written
    where no auth reads it, such as a container's temporary directory, would rotate nothing);
    ``Unavailable`` when the key file or the auth database cannot be used. Nothing changes
    on either.
    """
    settings = auth.settings.get_settings()
    path = auth.keys.key_file(settings)
    if path is not None:
        _check_current_key(path, settings.jwt_issuer)
    _require_auth_migrated(settings.database_url, "published_key")
    try:
        return auth.keys.rotate_signing_key(settings)
    except DATABASE_ERRORS as exc:
        raise Unavailable(_auth_failed(settings.database_url, exc)) from exc


def _check_current_key(path: Path, issuer: str) -> None:
    """The key file holds the key auth signs with now (the one whose tokens must keep
    verifying after the rotation)."""
    if not path.exists():
        raise auth.keys.KeyRotationError(
            f"there is no key file at {path}: auth has not started with this data directory "
            "yet, or it reads its key elsewhere. Run this where auth's key file is, with the "
            "settings auth has (JWT_PRIVATE_KEY_FILE, or DENTIAPRO_DATA_DIR)"
        )
    try:
        Signer.from_pem(path.read_text(encoding="ascii"), issuer=issuer)
    except OSError as exc:
        raise Unavailable(f"cannot read the key file {path}: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:  # not a PEM, not Ed25519, encrypted
        raise Unavailable(f"the key file {path} holds no usable signing key: {exc}") from exc
