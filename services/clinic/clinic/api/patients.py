"""/api/patients/: the tenant's patients.

GET, POST and DELETE open the tenant's session in the route's own thread (one hand-off per
request) and answer with the public model serialised there; PUT and PATCH load the record in
a dependency so that a missing patient is a 404 before the body is validated.
"""

from fastapi import APIRouter, Response

from clinic import crud
from clinic.api.deps import (
    AUTHENTICATED,
    ListFiltersDep,
    PatientDep,
    RecordId,
    TenantDep,
    TenantSession,
    load_patient,
    respond,
)
from clinic.models import PatientCreate, PatientPublic, PatientUpdate
from clinic.pagination import PageDep, Paginated, page_of

router = APIRouter(prefix="/api/patients", tags=["patients"], dependencies=AUTHENTICATED)


@router.get("/", response_model=Paginated[PatientPublic])
def list_patients(tenant: TenantDep, filters: ListFiltersDep, page: PageDep) -> Response:
    """List patients, paginated; `search`, `ordering` and `updated_after` narrow it."""
    with tenant.session() as session:
        result = crud.list_patients(session=session, filters=filters, page=page)
        return respond(Paginated, page_of(page, result, PatientPublic))


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


@router.put("/{patient_id}/", response_model=PatientPublic)
def update_patient(
    session: TenantSession, patient: PatientDep, patient_in: PatientCreate
) -> Response:
    """Replace a patient (every field)."""
    changes = patient_in.model_dump()
    return respond(
        PatientPublic, crud.update_patient(session=session, patient=patient, changes=changes)
    )


@router.patch("/{patient_id}/", response_model=PatientPublic)
def patch_patient(
    session: TenantSession, patient: PatientDep, patient_in: PatientUpdate
) -> Response:
    """Change some fields of a patient."""
    changes = patient_in.model_dump(exclude_unset=True)
    return respond(
        PatientPublic, crud.update_patient(session=session, patient=patient, changes=changes)
    )


@router.delete("/{patient_id}/", status_code=204, response_class=Response)
def delete_patient(patient_id: RecordId, tenant: TenantDep) -> Response:
    """Delete a patient; 409 while consultations reference it."""
    with tenant.session() as session:
        patient = load_patient(session, patient_id, for_update=True)
        crud.delete_patient(session=session, patient=patient)
    return Response(status_code=204)
