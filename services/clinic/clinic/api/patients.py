"""/api/patients/: the tenant's patients.

Every route opens the tenant's session in its own thread (one hand-off per request) and
answers with the public model serialised there; PUT and PATCH validate their body there,
after loading the record, so a missing patient is a 404 before the body is looked at (as in
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
    load_patient,
    parse_body,
    replace_body,
    respond,
)
from clinic.models import PatientCreate, PatientPublic, PatientUpdate
from clinic.pagination import Page, PageDep, page_of

router = APIRouter(prefix="/api/patients", tags=["patients"], dependencies=AUTHENTICATED)


@router.get("/", response_model=Page[PatientPublic])
def list_patients(tenant: TenantDep, filters: ListFiltersDep, page: PageDep) -> Response:
    """List patients, paginated; `search`, `ordering` and `updated_after` narrow it."""
    with tenant.session() as session:
        result = crud.list_patients(session=session, filters=filters, page=page)
        return respond(Page, page_of(page, result, PatientPublic))


@router.post("/", status_code=201, response_model=PatientPublic)
def create_patient(tenant: TenantDep, patient_in: PatientCreate) -> Response:
    """Create a patient."""
    with tenant.session() as session:
        patient = crud.create_patient(session=session, patient_in=patient_in)
        return respond(PatientPublic, patient, 201)


@router.get("/{patient_id}/", response_model=PatientPublic)
def get_patient(patient_id: RecordId, tenant: TenantDep) -> Response:
    """One patient."""
    with tenant.session() as session:
        return respond(PatientPublic, load_patient(session, patient_id))


@router.put(
    "/{patient_id}/", response_model=PatientPublic, openapi_extra=replace_body(PatientCreate)
)
def update_patient(patient_id: RecordId, tenant: TenantDep, body: RawBody = None) -> Response:
    """Replace a patient (every field)."""
    with tenant.session() as session:
        patient = load_patient(session, patient_id, for_update=True)
        changes = parse_body(PatientCreate, body).model_dump()
        updated = crud.update_patient(session=session, patient=patient, changes=changes)
        return respond(PatientPublic, updated)


@router.patch(
    "/{patient_id}/", response_model=PatientPublic, openapi_extra=replace_body(PatientUpdate)
)
def patch_patient(patient_id: RecordId, tenant: TenantDep, body: RawBody = None) -> Response:
    """Change some fields of a patient."""
    with tenant.session() as session:
        patient = load_patient(session, patient_id, for_update=True)
        changes = parse_body(PatientUpdate, body).model_dump(exclude_unset=True)
        updated = crud.update_patient(session=session, patient=patient, changes=changes)
        return respond(PatientPublic, updated)


@router.delete("/{patient_id}/", status_code=204, response_class=Response)
def delete_patient(patient_id: RecordId, tenant: TenantDep) -> Response:
    """Delete a patient; 409 while consultations reference it."""
    with tenant.session() as session:
        patient = load_patient(session, patient_id, for_update=True)
        crud.delete_patient(session=session, patient=patient)
    return Response(status_code=204)
