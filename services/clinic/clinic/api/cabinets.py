"""/api/cabinets/: the tenant's cabinets.

Every route opens the tenant's session in its own thread (one hand-off per request) and
answers with the public model serialised there; PUT and PATCH validate their body there,
after loading the record, so a missing cabinet is a 404 before the body is looked at (as in
DRF).
"""

from fastapi import APIRouter, Response

from clinic import crud
from clinic.api.deps import (
    AUTHENTICATED,
    ListFiltersDep,
    RawBody,
    RecordId,
    TenantDep,
    load_cabinet,
    parse_body,
    replace_body,
    respond,
)
from clinic.models import CabinetCreate, CabinetPublic, CabinetUpdate
from clinic.pagination import Page, PageDep, page_of

router = APIRouter(prefix="/api/cabinets", tags=["cabinets"], dependencies=AUTHENTICATED)


@router.get("/", response_model=Page[CabinetPublic])
def list_cabinets(tenant: TenantDep, filters: ListFiltersDep, page: PageDep) -> Response:
    """List cabinets, paginated; `search`, `ordering` and `updated_after` narrow it."""
    with tenant.session() as session:
        result = crud.list_cabinets(session=session, filters=filters, page=page)
        return respond(Page, page_of(page, result, CabinetPublic))


@router.post("/", status_code=201, response_model=CabinetPublic)
def create_cabinet(tenant: TenantDep, cabinet_in: CabinetCreate) -> Response:
    """Create a cabinet."""
    with tenant.session() as session:
        cabinet = crud.create_cabinet(session=session, cabinet_in=cabinet_in)
        return respond(CabinetPublic, cabinet, 201)


@router.get("/{cabinet_id}/", response_model=CabinetPublic)
def get_cabinet(cabinet_id: RecordId, tenant: TenantDep) -> Response:
    """One cabinet."""
    with tenant.session() as session:
        return respond(CabinetPublic, load_cabinet(session, cabinet_id))


@router.put(
    "/{cabinet_id}/", response_model=CabinetPublic, openapi_extra=replace_body(CabinetCreate)
)
def update_cabinet(cabinet_id: RecordId, tenant: TenantDep, body: RawBody = None) -> Response:
    """Replace a cabinet (every field)."""
    with tenant.session() as session:
        cabinet = load_cabinet(session, cabinet_id, for_update=True)
        changes = parse_body(CabinetCreate, body).model_dump()
        updated = crud.update_cabinet(session=session, cabinet=cabinet, changes=changes)
        return respond(CabinetPublic, updated)


@router.patch(
    "/{cabinet_id}/", response_model=CabinetPublic, openapi_extra=replace_body(CabinetUpdate)
)
def patch_cabinet(cabinet_id: RecordId, tenant: TenantDep, body: RawBody = None) -> Response:
    """Change some fields of a cabinet."""
    with tenant.session() as session:
        cabinet = load_cabinet(session, cabinet_id, for_update=True)
        changes = parse_body(CabinetUpdate, body).model_dump(exclude_unset=True)
        updated = crud.update_cabinet(session=session, cabinet=cabinet, changes=changes)
        return respond(CabinetPublic, updated)


@router.delete("/{cabinet_id}/", status_code=204, response_class=Response)
def delete_cabinet(cabinet_id: RecordId, tenant: TenantDep) -> Response:
    """Delete a cabinet; 409 while consultations reference it."""
    with tenant.session() as session:
        cabinet = load_cabinet(session, cabinet_id, for_update=True)
        crud.delete_cabinet(session=session, cabinet=cabinet)
    return Response(status_code=204)
