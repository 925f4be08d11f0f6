"""Dependencies every clinic route builds on: the caller, its tenant's session, the record.

The tenant comes from the verified token only (``principal.tenant``), never from a header.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, TypeVar

from common.errors import NotFound, TokenInvalid, ValidationFailed
from common.listing import ListFiltersDep, utc_datetime
from common.tokens import CurrentPrincipal, get_principal
from fastapi import Body, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlmodel import Session

from clinic import crud
from clinic.crud import ConsultationFilters
from clinic.db import TenantDatabases, valid_schema_name
from clinic.models import Cabinet, Consultation, Patient

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

__all__ = ["AUTHENTICATED", "CurrentPrincipal", "TenantDep"]


@dataclass(frozen=True, slots=True)
class Tenant:
    """The caller's tenant: routes open its session in their own thread (one hand-off)."""

    databases: TenantDatabases
    name: str
    write: bool

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session on the tenant's data (provisioned on first use), closed afterwards."""
        with self.databases.session(self.name, write=self.write) as session:
            yield session


async def get_tenant(request: Request, principal: CurrentPrincipal) -> Tenant:
    """No I/O here (``async``: no thread hand-off); the route opens the session."""
    # Signed by auth, but still an identifier we are about to use in SQL: check its shape.
    if not valid_schema_name(principal.tenant):
        raise TokenInvalid("Token names an invalid tenant.")
    databases: TenantDatabases = request.app.state.databases
    return Tenant(databases, principal.tenant, request.method not in SAFE_METHODS)


TenantDep = Annotated[Tenant, Depends(get_tenant)]


RecordId = Annotated[int, Path()]


def load_cabinet(session: Session, cabinet_id: int, *, for_update: bool = False) -> Cabinet:
    cabinet = crud.get_cabinet(session=session, cabinet_id=cabinet_id, for_update=for_update)
    if cabinet is None:
        raise NotFound()
    return cabinet


def load_patient(session: Session, patient_id: int, *, for_update: bool = False) -> Patient:
    patient = crud.get_patient(session=session, patient_id=patient_id, for_update=for_update)
    if patient is None:
        raise NotFound()
    return patient


def load_consultation(
    session: Session, consultation_id: int, *, for_update: bool = False
) -> Consultation:
    consultation = crud.get_consultation(
        session=session, consultation_id=consultation_id, for_update=for_update
    )
    if consultation is None:
        raise NotFound()
    return consultation


Model = TypeVar("Model", bound=BaseModel)

# PUT and PATCH read their body as raw JSON and validate it in the route, after the record
# is loaded (404 first, as in DRF), in the same thread hand-off. The document keeps the
# model's schema.
RawBody = Annotated[Any, Body()]


def replace_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is a ``RawBody`` validated as ``model``."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def parse_body(model: type[Model], body: Any) -> Model:
    """``body`` as ``model``; a bad one is the same 400 FastAPI's own validation gives."""
    if body is None:  # no body, or JSON null: what FastAPI reports for a missing body
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors, body=body) from None


def respond(public: type[BaseModel], record: object, status_code: int = 200) -> Response:
    """``record`` as its public model, validated once and serialised in the route's thread.

    A ``Response`` is sent as is: FastAPI does not validate it against ``response_model``
    again (which it would do in one more thread hand-off); ``response_model`` stays on the
    route for the OpenAPI document.
    """
    model = (
        record
        if isinstance(record, public)
        else public.model_validate(record, from_attributes=True)
    )
    return Response(model.model_dump_json(), status_code, media_type="application/json")


# --- list query parameters (bad values: 400 on the parameter) ---

INVALID_DATE_OR_DATETIME = "Enter a valid date or date/time."
INVALID_ID = "A valid integer is required."


def _date_or_datetime(value: str) -> date | datetime | None:
    """A bare ``YYYY-MM-DD`` stays a date (a whole day); anything else must be a date-time."""
    text = value.strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else utc_datetime(text)
    except ValueError:
        return None


async def consultation_filters(
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
