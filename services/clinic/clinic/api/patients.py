"""/api/patients/: the tenant's patients."""

from typing import Any

from fastapi import APIRouter, Request, Response

from clinic import crud
from clinic.api.deps import AUTHENTICATED, ListFiltersDep, PatientDep, TenantSession
from clinic.models import Patient, PatientCreate, PatientPublic, PatientUpdate
from clinic.pagination import PageDep, Paginated, page_response

router = APIRouter(prefix="/api/patients", tags=["patients"], dependencies=AUTHENTICATED)


@router.get("/", response_model=Paginated[PatientPublic])
def list_patients(
    request: Request, session: TenantSession, filters: ListFiltersDep, page: PageDep
) -> dict[str, Any]:
    """List patients, paginated; `search`, `ordering` and `updated_after` narrow it."""
    result = crud.list_patients(session=session, filters=filters, page=page)
    return page_response(request, result, PatientPublic)


@router.post("/", status_code=201, response_model=PatientPublic)
def create_patient(session: TenantSession, patient_in: PatientCreate) -> Patient:
    """Create a patient."""
    return crud.create_patient(session=session, patient_in=patient_in)


@router.get("/{patient_id}/", response_model=PatientPublic)
def get_patient(patient: PatientDep) -> Patient:
    """One patient."""
    return patient


@router.put("/{patient_id}/", response_model=PatientPublic)
def update_patient(
    session: TenantSession, patient: PatientDep, patient_in: PatientCreate
) -> Patient:
    """Replace a patient (every field)."""
    return crud.update_patient(session=session, patient=patient, changes=patient_in.model_dump())


@router.patch("/{patient_id}/", response_model=PatientPublic)
def patch_patient(
    session: TenantSession, patient: PatientDep, patient_in: PatientUpdate
) -> Patient:
    """Change some fields of a patient."""
    changes = patient_in.model_dump(exclude_unset=True)
    return crud.update_patient(session=session, patient=patient, changes=changes)


@router.delete("/{patient_id}/", status_code=204, response_class=Response)
def delete_patient(session: TenantSession, patient: PatientDep) -> Response:
    """Delete a patient; 409 while consultations reference it."""
    crud.delete_patient(session=session, patient=patient)
    return Response(status_code=204)
