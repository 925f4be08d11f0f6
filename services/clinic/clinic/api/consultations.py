"""/api/consultations/: the tenant's consultations (a patient seen in a cabinet)."""

from typing import Any

from fastapi import APIRouter, Request, Response

from clinic import crud
from clinic.api.deps import AUTHENTICATED, ConsultationDep, ConsultationFiltersDep, TenantSession
from clinic.models import (
    Consultation,
    ConsultationCreate,
    ConsultationPublic,
    ConsultationUpdate,
)
from clinic.pagination import PageDep, Paginated, page_response

router = APIRouter(prefix="/api/consultations", tags=["consultations"], dependencies=AUTHENTICATED)


@router.get("/", response_model=Paginated[ConsultationPublic])
def list_consultations(
    request: Request, session: TenantSession, filters: ConsultationFiltersDep, page: PageDep
) -> dict[str, Any]:
    """List consultations; filter by `patient`, `cabinet`, `date_after`, `date_before`."""
    result = crud.list_consultations(session=session, filters=filters, page=page)
    return page_response(request, result, ConsultationPublic)


@router.post("/", status_code=201, response_model=ConsultationPublic)
def create_consultation(
    session: TenantSession, consultation_in: ConsultationCreate
) -> Consultation:
    """Record a consultation; `patient` and `cabinet` must exist in the tenant."""
    return crud.create_consultation(session=session, consultation_in=consultation_in)


@router.get("/{consultation_id}/", response_model=ConsultationPublic)
def get_consultation(consultation: ConsultationDep) -> Consultation:
    """One consultation."""
    return consultation


@router.put("/{consultation_id}/", response_model=ConsultationPublic)
def update_consultation(
    session: TenantSession, consultation: ConsultationDep, consultation_in: ConsultationCreate
) -> Consultation:
    """Replace a consultation (every field)."""
    return crud.update_consultation(
        session=session, consultation=consultation, changes=consultation_in.model_dump()
    )


@router.patch("/{consultation_id}/", response_model=ConsultationPublic)
def patch_consultation(
    session: TenantSession, consultation: ConsultationDep, consultation_in: ConsultationUpdate
) -> Consultation:
    """Change some fields of a consultation."""
    changes = consultation_in.model_dump(exclude_unset=True)
    return crud.update_consultation(session=session, consultation=consultation, changes=changes)


@router.delete("/{consultation_id}/", status_code=204, response_class=Response)
def delete_consultation(session: TenantSession, consultation: ConsultationDep) -> Response:
    """Delete a consultation."""
    crud.delete_consultation(session=session, consultation=consultation)
    return Response(status_code=204)
