"""Tenant registry operations: route → these functions → SQLModel. Raise domain errors only."""

import logging

from common.errors import Conflict, ValidationFailed
from common.listing import Listing, ListQuery, PageResult, SearchField, fetch_page
from prometheus_client import Counter
from sqlalchemy import ColumnElement, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tenants.models import (
    Tenant,
    TenantCreate,
    TenantReplace,
    TenantUpdate,
    normalize_hostname,
    utcnow,
)

log = logging.getLogger("dentiapro.tenants")

TENANT_CHANGES = Counter("tenants_changes_total", "Tenant registry changes by action.", ["action"])
for _action in ("created", "updated", "deleted"):
    TENANT_CHANGES.labels(_action)  # every series exists from the start, at 0

# Names PostgreSQL or the platform already uses; a tenant schema must never collide with them.
RESERVED_SCHEMA_NAMES = frozenset(
    {
        "public",
        "information_schema",
        "default",
        "template0",
        "template1",
        "postgres",
        "pg_catalog",
        "pg_toast",
        "admin",
        "api",
        "auth",
        "clinic",
        "tenants",
        "shared",
        "system",
        "root",
        "alembic",
        "citus",
        "columnar",
    }
)

SCHEMA_NAME_TAKEN = "tenant with this schema name already exists."
SCHEMA_NAME_RESERVED = "This schema name is reserved."
SCHEMA_NAME_PG = "Schema names starting with pg_ are reserved."
SCHEMA_NAME_IMMUTABLE = "schema_name cannot be changed after creation."
DOMAIN_TAKEN = "tenant with this domain url already exists."
DEFAULT_TENANT_UNDELETABLE = "The default tenant cannot be deleted."


def _live() -> ColumnElement[bool]:
    return col(Tenant.deleted_at).is_(None)


# Live tenants, as TenantPublic shows them; every listed field is orderable (id breaks ties);
# search looks in name, schema_name and domain_url.
ORDERING = {
    "id": col(Tenant.id),
    "name": col(Tenant.name),
    "schema_name": col(Tenant.schema_name),
    "domain_url": col(Tenant.domain_url),
    "created_at": col(Tenant.created_at),
    "updated_at": col(Tenant.updated_at),
}
LISTING = Listing(
    table=Tenant.__table__,  # type: ignore[attr-defined]
    columns=list(ORDERING.values()),
    ordering=ORDERING,
    search=[
        SearchField(func.lower(column))
        for column in (col(Tenant.name), col(Tenant.schema_name), col(Tenant.domain_url))
    ],
    updated_at=col(Tenant.updated_at),
    where=[_live()],
)


async def list_tenants(*, session: AsyncSession, query: ListQuery) -> PageResult:
    return await fetch_page(session, LISTING, query)


async def all_tenants(*, session: AsyncSession, include_deleted: bool = False) -> list[Tenant]:
    """Every live tenant (and the deleted ones with ``include_deleted``), oldest first: the
    operator's view of the registry (``dentiapro tenants list``), not paginated."""
    statement = select(Tenant).order_by(col(Tenant.id))
    if not include_deleted:
        statement = statement.where(_live())
    return list((await session.exec(statement)).all())


async def get_tenant(*, session: AsyncSession, tenant_id: int) -> Tenant | None:
    """A live tenant by id (deleted ones are gone from the API)."""
    statement = select(Tenant).where(Tenant.id == tenant_id, _live())
    return (await session.exec(statement)).first()


async def get_tenant_by_schema_name(*, session: AsyncSession, schema_name: str) -> Tenant | None:
    """Live or deleted: callers need to know that a deleted tenant is inactive."""
    if "\x00" in schema_name:  # matches nothing, and PostgreSQL would refuse the parameter
        return None
    statement = select(Tenant).where(Tenant.schema_name == schema_name)
    return (await session.exec(statement)).first()


async def tenant_statuses(*, session: AsyncSession) -> dict[str, bool]:
    """Every tenant, live or deleted, as schema_name → is_active: the edge's bulk refresh.

    Two columns, no ORM objects: every edge replica asks for the whole registry every ~15 s.
    """
    statement = select(Tenant.schema_name, col(Tenant.deleted_at).is_(None))
    rows = await session.exec(statement)
    return {schema_name: bool(active) for schema_name, active in rows}


async def get_tenant_by_domain(*, session: AsyncSession, domain: str) -> Tenant | None:
    """The live tenant serving ``domain`` (a Host header value: any ``:port`` is ignored)."""
    host = normalize_hostname(domain).rstrip(".")
    if "\x00" in host:
        return None
    name, _, port = host.rpartition(":")
    if name and port.isdigit() and ":" not in name:
        host = name
    statement = select(Tenant).where(Tenant.domain_url == host, _live())
    return (await session.exec(statement)).first()


def _schema_name_errors(schema_name: str, default_schema: str) -> list[str]:
    if schema_name.startswith("pg_"):
        return [SCHEMA_NAME_PG]
    if schema_name in RESERVED_SCHEMA_NAMES or schema_name == default_schema:
        return [SCHEMA_NAME_RESERVED]
    return []


async def _conflicts(
    session: AsyncSession,
    *,
    schema_name: str | None,
    domain_url: str | None,
    exclude_id: int | None,
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if schema_name is not None:
        statement = select(Tenant.id).where(Tenant.schema_name == schema_name)
        if exclude_id is not None:
            statement = statement.where(Tenant.id != exclude_id)
        if (await session.exec(statement)).first() is not None:
            errors["schema_name"] = [SCHEMA_NAME_TAKEN]
    if domain_url is not None:
        statement = select(Tenant.id).where(Tenant.domain_url == domain_url, _live())
        if exclude_id is not None:
            statement = statement.where(Tenant.id != exclude_id)
        if (await session.exec(statement)).first() is not None:
            errors["domain_url"] = [DOMAIN_TAKEN]
    return errors


async def _save(session: AsyncSession, tenant: Tenant, *, check_schema: bool) -> Tenant:
    """Commit ``tenant``; a unique index that a concurrent writer won is a 400, not a 500."""
    # Read before commit: a rollback expires the object and reloads the stored values.
    schema_name, domain_url, tenant_id = tenant.schema_name, tenant.domain_url, tenant.id
    session.add(tenant)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        errors = await _conflicts(
            session,
            schema_name=schema_name if check_schema else None,
            domain_url=domain_url,
            exclude_id=tenant_id,
        )
        raise ValidationFailed(
            errors or {"non_field_errors": ["A concurrent change conflicted; try again."]}
        ) from None
    await session.refresh(tenant)
    return tenant


async def create_tenant(
    *, session: AsyncSession, data: TenantCreate, default_schema: str
) -> Tenant:
    errors = await _conflicts(
        session, schema_name=data.schema_name, domain_url=data.domain_url, exclude_id=None
    )
    reserved = _schema_name_errors(data.schema_name, default_schema)
    if reserved:
        errors["schema_name"] = reserved
    if errors:
        raise ValidationFailed(errors)
    now = utcnow()
    tenant = Tenant.model_validate(data, update={"created_at": now, "updated_at": now})
    tenant = await _save(session, tenant, check_schema=True)
    TENANT_CHANGES.labels("created").inc()
    log.info("tenant %s created", tenant.schema_name)
    return tenant


async def update_tenant(
    *, session: AsyncSession, tenant: Tenant, data: TenantReplace | TenantUpdate
) -> Tenant:
    """Apply a PUT (every field) or PATCH (the fields sent); schema_name never changes."""
    changes = data.model_dump(exclude_unset=True)
    if "schema_name" in changes and changes.pop("schema_name") != tenant.schema_name:
        raise ValidationFailed({"schema_name": [SCHEMA_NAME_IMMUTABLE]})
    errors = await _conflicts(
        session, schema_name=None, domain_url=changes.get("domain_url"), exclude_id=tenant.id
    )
    if errors:
        raise ValidationFailed(errors)
    tenant.sqlmodel_update(changes)
    tenant.updated_at = utcnow()
    tenant = await _save(session, tenant, check_schema=False)
    TENANT_CHANGES.labels("updated").inc()
    return tenant


async def delete_tenant(*, session: AsyncSession, tenant: Tenant, default_schema: str) -> None:
    """Hide the tenant; its row (and its schema_name) and its clinical data stay."""
    if tenant.schema_name == default_schema:
        raise Conflict(DEFAULT_TENANT_UNDELETABLE)
    now = utcnow()
    tenant.deleted_at = now
    tenant.updated_at = now
    session.add(tenant)
    await session.commit()
    TENANT_CHANGES.labels("deleted").inc()
    log.info("tenant %s deleted", tenant.schema_name)


async def ensure_default_tenant(
    *, session: AsyncSession, schema_name: str, name: str, domain: str
) -> Tenant:
    """Create the default tenant when missing; replicas racing at start-up all end up with one."""
    existing = await get_tenant_by_schema_name(session=session, schema_name=schema_name)
    if existing is not None:
        return existing
    now = utcnow()
    tenant = Tenant(
        name=name, schema_name=schema_name, domain_url=domain, created_at=now, updated_at=now
    )
    session.add(tenant)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()  # another replica created it first
    else:
        TENANT_CHANGES.labels("created").inc()
        log.info("default tenant %s created", schema_name)
        await session.refresh(tenant)
        return tenant
    existing = await get_tenant_by_schema_name(session=session, schema_name=schema_name)
    if existing is None:
        raise RuntimeError(
            f"cannot create the default tenant {schema_name!r}: another live tenant "
            f"already uses the domain {domain!r}"
        )
    return existing
