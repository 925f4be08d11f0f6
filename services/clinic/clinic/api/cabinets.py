"""/api/cabinets/: the tenant's cabinets."""

from common.listing import ListQueryDep, PageResult
from common.openapi import errors
from common.pagination import Page
from fastapi import APIRouter, Response

from clinic import crud
from clinic.api.deps import AUTHENTICATED, AuditDep, CabinetDep, Record, TenantDb
from clinic.models import CabinetCreate, CabinetPublic, CabinetUpdate

router = APIRouter(prefix="/api/cabinets", tags=["cabinets"], dependencies=AUTHENTICATED)


@router.get("/", response_model=Page[CabinetPublic])
async def list_cabinets(query: ListQueryDep, db: TenantDb, audit: AuditDep) -> PageResult:
    """List cabinets, paginated; `search`, `ordering` and `updated_after` narrow it."""
    page = await crud.list_cabinets(db=db, query=query)
    audit.touch("list", "cabinet", [row.id for row in page.results])
    return page


@router.post("/", status_code=201, response_model=CabinetPublic)
async def create_cabinet(cabinet_in: CabinetCreate, db: TenantDb, audit: AuditDep) -> Record:
    """Create a cabinet."""
    return await crud.create_cabinet(db=db, cabinet_in=cabinet_in, audit=audit)


@router.get("/{cabinet_id}/", response_model=CabinetPublic)
async def get_cabinet(cabinet: CabinetDep) -> Record:
    """One cabinet."""
    return cabinet


@router.put("/{cabinet_id}/", response_model=CabinetPublic)
async def update_cabinet(
    cabinet: CabinetDep, cabinet_in: CabinetCreate, db: TenantDb, audit: AuditDep
) -> Record:
    """Replace a cabinet (every field)."""
    return await crud.update_cabinet(
        db=db, cabinet_id=cabinet.id, changes=cabinet_in.model_dump(), audit=audit
    )


@router.patch("/{cabinet_id}/", response_model=CabinetPublic)
async def patch_cabinet(
    cabinet: CabinetDep, changes: CabinetUpdate, db: TenantDb, audit: AuditDep
) -> Record:
    """Change some fields of a cabinet."""
    return await crud.update_cabinet(
        db=db,
        cabinet_id=cabinet.id,
        changes=changes.model_dump(exclude_unset=True),
        audit=audit,
    )


@router.delete("/{cabinet_id}/", status_code=204, response_class=Response, responses=errors(409))
async def delete_cabinet(cabinet: CabinetDep, db: TenantDb, audit: AuditDep) -> None:
    """Delete a cabinet; 409 while consultations reference it."""
    await crud.delete_cabinet(db=db, cabinet_id=cabinet.id, audit=audit)
