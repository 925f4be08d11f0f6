"""Dependencies every clinic route builds on: the caller, its tenant's session, the record.

The tenant comes from the verified token only (``principal.tenant``), never from a header.
"""

from collections.abc import Iterator
from datetime import date, datetime
from typing import Annotated

from common.errors import NotFound, TokenInvalid, ValidationFailed
from common.tokens import CurrentPrincipal, get_principal
from fastapi import Depends, Path, Query, Request
from sqlmodel import Session

from clinic import crud
from clinic.crud import ConsultationFilters, ListFilters
from clinic.db import TenantDatabases, valid_schema_name
from clinic.models import Cabinet, Consultation, Patient, parse_datetime

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

__all__ = ["AUTHENTICATED", "CurrentPrincipal", "TenantSession"]


def get_tenant_session(request: Request, principal: CurrentPrincipal) -> Iterator[Session]:
    """A session on the caller's tenant data (provisioned on first use), closed afterwards."""
    # Signed by auth, but still an identifier we are about to use in SQL: check its shape.
    if not valid_schema_name(principal.tenant):
        raise TokenInvalid("Token names an invalid tenant.")
    databases: TenantDatabases = request.app.state.databases
    write = request.method not in SAFE_METHODS
    with databases.session(principal.tenant, write=write) as session:
        yield session


TenantSession = Annotated[Session, Depends(get_tenant_session)]


def _for_update(request: Request) -> bool:
    return request.method not in SAFE_METHODS


def get_cabinet(
    cabinet_id: Annotated[int, Path()], session: TenantSession, request: Request
) -> Cabinet:
    cabinet = crud.get_cabinet(
        session=session, cabinet_id=cabinet_id, for_update=_for_update(request)
    )
    if cabinet is None:
        raise NotFound()
    return cabinet


def get_patient(
    patient_id: Annotated[int, Path()], session: TenantSession, request: Request
) -> Patient:
    patient = crud.get_patient(
        session=session, patient_id=patient_id, for_update=_for_update(request)
    )
    if patient is None:
        raise NotFound()
    return patient


def get_consultation(
    consultation_id: Annotated[int, Path()], session: TenantSession, request: Request
) -> Consultation:
    consultation = crud.get_consultation(
        session=session, consultation_id=consultation_id, for_update=_for_update(request)
    )
    if consultation is None:
        raise NotFound()
    return consultation


CabinetDep = Annotated[Cabinet, Depends(get_cabinet)]
PatientDep = Annotated[Patient, Depends(get_patient)]
ConsultationDep = Annotated[Consultation, Depends(get_consultation)]


# --- list query parameters (bad values: 400 on the parameter) ---

INVALID_DATETIME = "Enter a valid date/time."
INVALID_DATE_OR_DATETIME = "Enter a valid date or date/time."
INVALID_ID = "A valid integer is required."


def _datetime(value: str) -> datetime | None:
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def _date_or_datetime(value: str) -> date | datetime | None:
    """A bare ``YYYY-MM-DD`` stays a date (a whole day); anything else must be a date-time."""
    text = value.strip()
    if len(text) == 10:
        try:
            return date.fromisoformat(text)
        except ValueError:
            return None
    return _datetime(text)


def list_filters(
    search: Annotated[str, Query(description="Case-insensitive search terms.")] = "",
    ordering: Annotated[str, Query(description="Comma-separated fields, `-` for descending.")] = "",
    updated_after: Annotated[
        str | None, Query(description="Only records updated at or after this ISO date-time.")
    ] = None,
) -> ListFilters:
    since = None
    if updated_after is not None:
        since = _datetime(updated_after)
        if since is None:
            raise ValidationFailed({"updated_after": INVALID_DATETIME})
    return ListFilters(search=search, ordering=ordering, updated_after=since)


ListFiltersDep = Annotated[ListFilters, Depends(list_filters)]


def consultation_filters(
    common: ListFiltersDep,
    patient: Annotated[str | None, Query(description="Patient id.")] = None,
    cabinet: Annotated[str | None, Query(description="Cabinet id.")] = None,
    date_after: Annotated[
        str | None, Query(description="Inclusive lower bound: a date or a date-time.")
    ] = None,
    date_before: Annotated[
        str | None, Query(description="Inclusive upper bound: a date (whole day) or a date-time.")
    ] = None,
) -> ConsultationFilters:
    errors: dict[str, str] = {}
    ids: dict[str, int | None] = {}
    for name, raw in (("patient", patient), ("cabinet", cabinet)):
        ids[name] = None
        if raw is not None and raw.strip():
            if raw.strip().isdigit():
                ids[name] = int(raw.strip())
            else:
                errors[name] = INVALID_ID
    bounds: dict[str, date | datetime | None] = {}
    for name, raw in (("date_after", date_after), ("date_before", date_before)):
        bounds[name] = None
        if raw is not None and raw.strip():
            bounds[name] = _date_or_datetime(raw)
            if bounds[name] is None:
                errors[name] = INVALID_DATE_OR_DATETIME
    if errors:
        raise ValidationFailed(errors)
    return ConsultationFilters(
        search=common.search,
        ordering=common.ordering,
        updated_after=common.updated_after,
        patient=ids["patient"],
        cabinet=ids["cabinet"],
        date_after=bounds["date_after"],
        date_before=bounds["date_before"],
    )


ConsultationFiltersDep = Annotated[ConsultationFilters, Depends(consultation_filters)]

# Router-level dependency: every clinic route needs a valid access token.
AUTHENTICATED = [Depends(get_principal)]
