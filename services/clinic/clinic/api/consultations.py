"""/api/consultations/: the tenant's consultations (a patient seen in a cabinet)."""

from common.listing import ListQueryDep, PageResult
from common.pagination import Page
from fastapi import APIRouter, Response

from clinic import crud
from clinic.api.deps import (
    AUTHENTICATED,
    ConsultationDep,
    ConsultationFiltersDep,
    Record,
    TenantDb,
)
from clinic.models import ConsultationCreate, ConsultationPublic, ConsultationUpdate

router = APIRouter(prefix="/api/consultations", tags=["consultations"], dependencies=AUTHENTICATED)


@router.get("/", response_model=Page[ConsultationPublic])
async def list_consultations(
    query: ListQueryDep, filters: ConsultationFiltersDep, db: TenantDb
) -> PageResult:
    """List consultations; filter by `patient`, `cabinet`, `date_after`, `date_before`."""
    return await crud.list_consultations(db=db, query=query, filters=filters)


@router.post("/", status_code=201, response_model=ConsultationPublic)
async def create_consultation(consultation_in: ConsultationCreate, db: TenantDb) -> Record:
    """Record a consultation; `patient` and `cabinet` must exist in the tenant."""
    return await crud.create_consultation(db=db, consultation_in=consultation_in)


@router.get("/{consultation_id}/", response_model=ConsultationPublic)
async def get_consultation(consultation: ConsultationDep) -> Record:
    """One consultation."""
    return consultation


@router.put("/{consultation_id}/", response_model=ConsultationPublic)
async def update_consultation(
    consultation: ConsultationDep, consultation_in: ConsultationCreate, db: TenantDb
) -> Record:
    """Replace a consultation (every field)."""
    return await crud.update_consultation(
        db=db, consultation_id=consultation.id, changes=consultation_in.model_dump()
    )


@router.patch("/{consultation_id}/", response_model=ConsultationPublic)
async def patch_consultation(
    consultation: ConsultationDep, changes: ConsultationUpdate, db: TenantDb
) -> Record:
    """Change some fields of a consultation."""
    return await crud.update_consultation(
        db=db, consultation_id=consultation.id, changes=changes.model_dump(exclude_unset=True)
    )


@router.delete("/{consultation_id}/", status_code=204, response_class=Response)
async def delete_consultation(consultation: ConsultationDep, db: TenantDb) -> None:
    """Delete a consultation."""
    await crud.delete_consultation(db=db, consultation_id=consultation.id)
