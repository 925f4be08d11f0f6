"""/api/consultations/: the tenant's consultations (a consultation seen in a cabinet).

Every route opens the tenant's session in its own thread (one hand-off per request) and
answers with the public model serialised there; PUT and PATCH validate their body there,
after loading the record, so a missing consultation is a 404 before the body is looked at (as in
DRF).
"""

from fastapi import APIRouter, Response

from clinic import crud
from clinic.api.deps import (
    AUTHENTICATED,
    ConsultationFiltersDep,
    RawBody,
    RecordId,
    TenantDep,
    load_consultation,
    parse_body,
    replace_body,
    respond,
)
from clinic.models import ConsultationCreate, ConsultationPublic, ConsultationUpdate
from clinic.pagination import Page, PageDep, page_of

router = APIRouter(prefix="/api/consultations", tags=["consultations"], dependencies=AUTHENTICATED)


@router.get("/", response_model=Page[ConsultationPublic])
def list_consultations(
    tenant: TenantDep, filters: ConsultationFiltersDep, page: PageDep
) -> Response:
    """List consultations; filter by `patient`, `cabinet`, `date_after`, `date_before`."""
    with tenant.session() as session:
        result = crud.list_consultations(session=session, filters=filters, page=page)
        return respond(Page, page_of(page, result, ConsultationPublic))


@router.post("/", status_code=201, response_model=ConsultationPublic)
def create_consultation(tenant: TenantDep, consultation_in: ConsultationCreate) -> Response:
    """Record a consultation; `patient` and `cabinet` must exist in the tenant."""
    with tenant.session() as session:
        consultation = crud.create_consultation(session=session, consultation_in=consultation_in)
        return respond(ConsultationPublic, consultation, 201)


@router.get("/{consultation_id}/", response_model=ConsultationPublic)
def get_consultation(consultation_id: RecordId, tenant: TenantDep) -> Response:
    """One consultation."""
    with tenant.session() as session:
        return respond(ConsultationPublic, load_consultation(session, consultation_id))


@router.put(
    "/{consultation_id}/",
    response_model=ConsultationPublic,
    openapi_extra=replace_body(ConsultationCreate),
)
def update_consultation(
    consultation_id: RecordId, tenant: TenantDep, body: RawBody = None
) -> Response:
    """Replace a consultation (every field)."""
    with tenant.session() as session:
        consultation = load_consultation(session, consultation_id, for_update=True)
        changes = parse_body(ConsultationCreate, body).model_dump()
        updated = crud.update_consultation(
            session=session, consultation=consultation, changes=changes
        )
        return respond(ConsultationPublic, updated)


@router.patch(
    "/{consultation_id}/",
    response_model=ConsultationPublic,
    openapi_extra=replace_body(ConsultationUpdate),
)
def patch_consultation(
    consultation_id: RecordId, tenant: TenantDep, body: RawBody = None
) -> Response:
    """Change some fields of a consultation."""
    with tenant.session() as session:
        consultation = load_consultation(session, consultation_id, for_update=True)
        changes = parse_body(ConsultationUpdate, body).model_dump(exclude_unset=True)
        updated = crud.update_consultation(
            session=session, consultation=consultation, changes=changes
        )
        return respond(ConsultationPublic, updated)


@router.delete("/{consultation_id}/", status_code=204, response_class=Response)
def delete_consultation(consultation_id: RecordId, tenant: TenantDep) -> Response:
    """Delete a consultation."""
    with tenant.session() as session:
        consultation = load_consultation(session, consultation_id, for_update=True)
        crud.delete_consultation(session=session, consultation=consultation)
    return Response(status_code=204)
