"""/api/cabinets/: the tenant's cabinets."""

from typing import Any

from fastapi import APIRouter, Request, Response

from clinic import crud
from clinic.api.deps import AUTHENTICATED, CabinetDep, ListFiltersDep, TenantSession
from clinic.models import Cabinet, CabinetCreate, CabinetPublic, CabinetUpdate
from clinic.pagination import PageDep, Paginated, page_response

router = APIRouter(prefix="/api/cabinets", tags=["cabinets"], dependencies=AUTHENTICATED)


@router.get("/", response_model=Paginated[CabinetPublic])
def list_cabinets(
    request: Request, session: TenantSession, filters: ListFiltersDep, page: PageDep
) -> dict[str, Any]:
    """List cabinets, paginated; `search`, `ordering` and `updated_after` narrow it."""
    result = crud.list_cabinets(session=session, filters=filters, page=page)
    return page_response(request, result, CabinetPublic)


@router.post("/", status_code=201, response_model=CabinetPublic)
def create_cabinet(session: TenantSession, cabinet_in: CabinetCreate) -> Cabinet:
    """Create a cabinet."""
    return crud.create_cabinet(session=session, cabinet_in=cabinet_in)


@router.get("/{cabinet_id}/", response_model=CabinetPublic)
def get_cabinet(cabinet: CabinetDep) -> Cabinet:
    """One cabinet."""
    return cabinet


@router.put("/{cabinet_id}/", response_model=CabinetPublic)
def update_cabinet(
    session: TenantSession, cabinet: CabinetDep, cabinet_in: CabinetCreate
) -> Cabinet:
    """Replace a cabinet (every field)."""
    return crud.update_cabinet(session=session, cabinet=cabinet, changes=cabinet_in.model_dump())


@router.patch("/{cabinet_id}/", response_model=CabinetPublic)
def patch_cabinet(
    session: TenantSession, cabinet: CabinetDep, cabinet_in: CabinetUpdate
) -> Cabinet:
    """Change some fields of a cabinet."""
    changes = cabinet_in.model_dump(exclude_unset=True)
    return crud.update_cabinet(session=session, cabinet=cabinet, changes=changes)


@router.delete("/{cabinet_id}/", status_code=204, response_class=Response)
def delete_cabinet(session: TenantSession, cabinet: CabinetDep) -> Response:
    """Delete a cabinet; 409 while consultations reference it."""
    crud.delete_cabinet(session=session, cabinet=cabinet)
    return Response(status_code=204)
