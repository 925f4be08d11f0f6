"""Dependencies every clinic route builds on: the caller's tenant database and the record.

The tenant comes from the verified token only (``principal.tenant``), never from a header.
A route asking for ``PatientDep`` (etc.) gets the record or a 404 before its body is looked
at, as in DRF.
"""

from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Annotated, Any

from common.address import ClientAddress
from common.errors import NotFound, TokenInvalid, ValidationFailed
from common.listing import utc_datetime
from common.middleware import RESPONSE_HOOKS
from common.openapi import SPACE, raises
from common.paths import DIGITS_ONLY
from common.tokens import CurrentPrincipal, get_principal
from fastapi import Depends, Path, Query, Request
from pydantic import WithJsonSchema
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from clinic import crud
from clinic.audit import Actor, RequestAudit
from clinic.crud import RESOURCES, ConsultationFilters
from clinic.db import TenantDatabases, valid_schema_name
from clinic.models import MAX_ID, Cabinet, Consultation, Patient

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Router-level dependency: every clinic route needs a valid access token.
AUTHENTICATED = [Depends(get_principal)]


async def tenant_db(
    request: Request, principal: CurrentPrincipal
) -> AsyncIterator[AsyncConnection]:
    """The caller's tenant database: autocommit for reads, one transaction for a write,
    committed when the route returns (before the response is sent)."""
    # Signed by auth, but still an identifier we are about to use in SQL: check its shape.
    if not valid_schema_name(principal.tenant):
        raise TokenInvalid("Token names an invalid tenant.")
    databases: TenantDatabases = request.app.state.databases
    write = request.method not in SAFE_METHODS
    async with databases.connect(principal.tenant, write=write) as db:
        yield db


TenantDb = Annotated[AsyncConnection, Depends(tenant_db, scope="function")]

Record = Row[Any]

# The action a request on one record is, by method (a list or a create says so itself).
RECORD_ACTIONS = {
    "GET": "view",
    "HEAD": "view",
    "PUT": "update",
    "PATCH": "update",
    "DELETE": "delete",
}


async def request_audit(
    request: Request, principal: CurrentPrincipal, client: ClientAddress
) -> RequestAudit:
    """This request's audit: what it touched is recorded with the response's status, unless
    the change itself recorded it (clinic.audit). No I/O here."""
    actor = Actor(
        user_id=principal.user_id,
        username=principal.username,
        request_id=request.state.request_id,
        client_ip=client,
    )
    audit = RequestAudit(request.app.state.audit, principal.tenant, actor)
    request.scope["state"].setdefault(RESPONSE_HOOKS, []).append(audit.finish)
    return audit


AuditDep = Annotated[RequestAudit, Depends(request_audit)]


async def _load(
    request: Request, db: AsyncConnection, audit: RequestAudit, model: type, record_id: int
) -> Record:
    # Recorded whatever the outcome: a request for a record that does not exist is a 404 event.
    audit.touch(RECORD_ACTIONS.get(request.method, "view"), RESOURCES[model], [record_id])
    record = await crud.get(db, model, record_id)
    if record is None:
        raise NotFound()
    return record


# A path id outside the column's range names nothing: 404 (as a non-numeric one).
RecordPath = Annotated[int, DIGITS_ONLY, Path(ge=1, le=MAX_ID)]


async def load_cabinet(
    cabinet_id: RecordPath, request: Request, db: TenantDb, audit: AuditDep
) -> Record:
    return await _load(request, db, audit, Cabinet, cabinet_id)


async def load_patient(
    patient_id: RecordPath, request: Request, db: TenantDb, audit: AuditDep
) -> Record:
    return await _load(request, db, audit, Patient, patient_id)


async def load_consultation(
    consultation_id: RecordPath, request: Request, db: TenantDb, audit: AuditDep
) -> Record:
    return await _load(request, db, audit, Consultation, consultation_id)


CabinetDep = Annotated[Record, Depends(load_cabinet)]
PatientDep = Annotated[Record, Depends(load_patient)]
ConsultationDep = Annotated[Record, Depends(load_consultation)]


# --- the consultation list's own query parameters (bad values: 400 on the parameter) ---

INVALID_DATE_OR_DATETIME = "Enter a valid date or date/time."
INVALID_ID = "A valid integer is required."
MAX_ID_DIGITS = len(str(MAX_ID))


def record_id(raw: str) -> int | None:
    """An id as ASCII digits; None for anything else (``"³".isdigit()`` is true too). A number
    too long to be an id names nothing (and is not handed to ``int()`` whole)."""
    text = raw.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if len(text) <= MAX_ID_DIGITS else MAX_ID + 1


# A filter's id: digits (one beyond the column's range names nothing), or blank: no filter.
ID_FILTER = WithJsonSchema(
    {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": rf"^{SPACE}*$"}]}
)
DATE_OR_DATETIME = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string", "format": "date"},
            {"type": "string", "format": "date-time"},
            {"type": "string", "pattern": rf"^{SPACE}*$", "description": "blank: no bound"},
        ]
    }
)


def date_or_datetime(value: str) -> date | datetime | None:
    """A bare ``YYYY-MM-DD`` stays a date (a whole day); anything else must be a date-time."""
    text = value.strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else utc_datetime(text)
    except ValueError:
        return None


@raises(400)
async def consultation_filters(
    patient: Annotated[str | None, Query(description="Patient id."), ID_FILTER] = None,
    cabinet: Annotated[str | None, Query(description="Cabinet id."), ID_FILTER] = None,
    date_after: Annotated[
        str | None,
        Query(description="Inclusive lower bound: a date or a date-time."),
        DATE_OR_DATETIME,
    ] = None,
    date_before: Annotated[
        str | None,
        Query(description="Inclusive upper bound: a date (whole day) or a date-time."),
        DATE_OR_DATETIME,
    ] = None,
) -> ConsultationFilters:
    errors: dict[str, str] = {}
    ids: dict[str, int | None] = {}
    for name, raw in (("patient", patient), ("cabinet", cabinet)):
        ids[name] = None
        if raw is not None and raw.strip():
            ids[name] = record_id(raw)
            if ids[name] is None:
                errors[name] = INVALID_ID
    bounds: dict[str, date | datetime | None] = {}
    for name, raw in (("date_after", date_after), ("date_before", date_before)):
        bounds[name] = None
        if raw is not None and raw.strip():
            bounds[name] = date_or_datetime(raw)
            if bounds[name] is None:
                errors[name] = INVALID_DATE_OR_DATETIME
    if errors:
        raise ValidationFailed(errors)
    return ConsultationFilters(
        patient=ids["patient"],
        cabinet=ids["cabinet"],
        date_after=bounds["date_after"],
        date_before=bounds["date_before"],
    )


ConsultationFiltersDep = Annotated[ConsultationFilters, Depends(consultation_filters)]
