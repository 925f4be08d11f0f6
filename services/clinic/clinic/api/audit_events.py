"""/api/audit-events/: the tenant's audit trail, for its admins (DESIGN.md section 6b).

Read-only: the API has no route that changes or deletes an event (any other method is a 405),
and the database refuses it anyway. Newest first; "who saw patient 42" is
``?resource=patient&resource_id=42``.
"""

from datetime import datetime
from typing import Annotated

from common.errors import PermissionDenied, ValidationFailed
from common.listing import ListQueryDep, PageResult
from common.openapi import SPACE, raises
from common.pagination import Page
from common.tokens import CurrentPrincipal, Principal
from fastapi import APIRouter, Depends, Query
from pydantic import WithJsonSchema

from clinic import crud
from clinic.api.deps import (
    AUTHENTICATED,
    DATE_OR_DATETIME,
    ID_FILTER,
    TenantDb,
    date_or_datetime,
    record_id,
)
from clinic.crud import day_start
from clinic.models import AUDIT_ACTIONS, AUDIT_RESOURCES, MAX_ID, AuditEventPublic

INVALID_CHOICE = "Select a valid choice. {} is not one of the available choices."


@raises(403)
async def require_admin(principal: CurrentPrincipal) -> Principal:
    """The tenant's admins (and platform superusers) read the trail; staff get a 403."""
    if principal.role != "admin" and not principal.is_superuser:
        raise PermissionDenied()
    return principal


router = APIRouter(
    prefix="/api/audit-events",
    tags=["audit"],
    dependencies=[*AUTHENTICATED, Depends(require_admin)],
)


def _choice(choices: tuple[str, ...]) -> WithJsonSchema:
    # Trimmed before it is compared; blank: no filter.
    padded = rf"^{SPACE}*(?:{'|'.join(choices)})?{SPACE}*$"
    return WithJsonSchema({"type": "string", "pattern": padded, "examples": list(choices)})


@raises(400)
async def audit_filters(
    resource: Annotated[
        str | None,
        Query(description="cabinet, patient or consultation."),
        _choice(AUDIT_RESOURCES),
    ] = None,
    resource_id: Annotated[
        str | None,
        Query(description="Events that concern this record (its view, or a list)."),
        ID_FILTER,
    ] = None,
    user_id: Annotated[str | None, Query(description="Events of this user."), ID_FILTER] = None,
    action: Annotated[
        str | None,
        Query(description="view, list, create, update, delete or export."),
        _choice(AUDIT_ACTIONS),
    ] = None,
    after: Annotated[
        str | None,
        Query(description="At or after this date-time (a date: from its start)."),
        DATE_OR_DATETIME,
    ] = None,
    before: Annotated[
        str | None,
        Query(description="At or before this date-time (a date: the whole day)."),
        DATE_OR_DATETIME,
    ] = None,
) -> dict[str, object]:
    """The filters as the audit listing's named filters take them (400 on a bad one)."""
    errors: dict[str, str] = {}
    found: dict[str, object] = {}
    choices_of = (("resource", resource, AUDIT_RESOURCES), ("action", action, AUDIT_ACTIONS))
    for name, raw, choices in choices_of:
        if raw is not None and raw.strip():
            if raw.strip() not in choices:
                errors[name] = INVALID_CHOICE.format(raw.strip()[:32])
            else:
                found[name] = raw.strip()
    for name, raw in (("resource_id", resource_id), ("user_id", user_id)):
        if raw is not None and raw.strip():
            value = record_id(raw)
            if value is None:
                errors[name] = "A valid integer is required."
            else:
                # An id beyond the column's range names nothing (and must not reach
                # PostgreSQL, which refuses the parameter); no record or user has id 0.
                found[name] = value if value <= MAX_ID else 0
    for name, raw in (("after", after), ("before", before)):
        if raw is None or not raw.strip():
            continue
        bound = date_or_datetime(raw)
        if bound is None:
            errors[name] = "Enter a valid date or date/time."
        elif isinstance(bound, datetime):
            found[name] = bound
        elif name == "after":
            found["after"] = day_start(bound)
        elif until := crud.next_day_start(bound):  # a bare date covers its whole (UTC) day
            found["before_day"] = until
    if errors:
        raise ValidationFailed(errors)
    return found


@router.get("/", response_model=Page[AuditEventPublic])
async def list_audit_events(
    query: ListQueryDep,
    filters: Annotated[dict[str, object], Depends(audit_filters)],
    db: TenantDb,
) -> PageResult:
    """The tenant's audit trail, newest first: who accessed which clinical records."""
    return await crud.list_audit_events(db=db, query=query, filters=filters)
