"""/api/consultations/: the tenant's consultations (a patient seen in a cabinet)."""

from common.listing import ListQueryDep, PageResult
from common.pagination import Page
from fastapi import APIRouter, Response

from clinic import crud
from clinic.api.deps import (
    AUTHENTICATED,
    AuditDep,
    ConsultationDep,
    ConsultationFiltersDep,
    Record,
    TenantDb,
)
from clinic.models import ConsultationCreate, ConsultationPublic, ConsultationUpdate

router = APIRouter(prefix="/api/consultations", tags=["consultations"], dependencies=AUTHENTICATED)


@router.get("/", response_model=Page[ConsultationPublic])
async def list_consultations(
    query: ListQueryDep, filters: ConsultationFiltersDep, db: TenantDb, audit: AuditDep
) -> PageResult:
    """List consultations; filter by `patient`, `cabinet`, `date_after`, `date_before`."""
    page = await crud.list_consultations(db=db, query=query, filters=filters)
    audit.touch("list", "consultation", [row.id for row in page.results])
    return page


@router.post("/", status_code=201, response_model=ConsultationPublic)
async def create_consultation(
    consultation_in: ConsultationCreate, db: TenantDb, audit: AuditDep
) -> Record:
    """Record a consultation; `patient` and `cabinet` must exist in the tenant."""
    return await crud.create_consultation(db=db, consultation_in=consultation_in, audit=audit)


@router.get("/{consultation_id}/", response_model=ConsultationPublic)
async def get_consultation(consultation: ConsultationDep) -> Record:
    """One consultation."""
    return consultation


@router.put("/{consultation_id}/", response_model=ConsultationPublic)
async def update_consultation(
    consultation: ConsultationDep,
    consultation_in: ConsultationCreate,
    db: TenantDb,
    audit: AuditDep,
) -> Record:
    """Replace a consultation (every field)."""
    return await crud.update_consultation(
        db=db,
        consultation_id=consultation.id,
        changes=consultation_in.model_dump(),
        audit=audit,
    )


@router.patch("/{consultation_id}/", response_model=ConsultationPublic)
async def patch_consultation(
    consultation: ConsultationDep, changes: ConsultationUpdate, db: TenantDb, audit: AuditDep
) -> Record:
    """Change some fields of a consultation."""
    return await crud.update_consultation(
        db=db,
        consultation_id=consultation.id,
        changes=changes.model_dump(exclude_unset=True),
        audit=audit,
    )


@router.delete("/{consultation_id}/", status_code=204, response_class=Response)
async def delete_consultation(consultation: ConsultationDep, db: TenantDb, audit: AuditDep) -> None:
    """Delete a consultation."""
    await crud.delete_consultation(db=db, consultation_id=consultation.id, audit=audit)
