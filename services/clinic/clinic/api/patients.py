"""/api/patients/: the tenant's patients."""

from common.listing import ListQueryDep, PageResult
from common.openapi import errors
from common.pagination import Page
from common.tokens import CurrentPrincipal
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from clinic import crud
from clinic.api.deps import AUTHENTICATED, AuditDep, PatientDep, Record, TenantDb
from clinic.fhir import patient_bundle
from clinic.models import PatientCreate, PatientPublic, PatientUpdate

FHIR_JSON = "application/fhir+json"

router = APIRouter(prefix="/api/patients", tags=["patients"], dependencies=AUTHENTICATED)


@router.get("/", response_model=Page[PatientPublic])
async def list_patients(query: ListQueryDep, db: TenantDb, audit: AuditDep) -> PageResult:
    """List patients, paginated; `search`, `ordering` and `updated_after` narrow it."""
    page = await crud.list_patients(db=db, query=query)
    audit.touch("list", "patient", [row.id for row in page.results])
    return page


@router.post("/", status_code=201, response_model=PatientPublic)
async def create_patient(patient_in: PatientCreate, db: TenantDb, audit: AuditDep) -> Record:
    """Create a patient."""
    return await crud.create_patient(db=db, patient_in=patient_in, audit=audit)


@router.get("/{patient_id}/", response_model=PatientPublic)
async def get_patient(patient: PatientDep) -> Record:
    """One patient."""
    return patient


@router.put("/{patient_id}/", response_model=PatientPublic)
async def update_patient(
    patient: PatientDep, patient_in: PatientCreate, db: TenantDb, audit: AuditDep
) -> Record:
    """Replace a patient (every field)."""
    return await crud.update_patient(
        db=db, patient_id=patient.id, changes=patient_in.model_dump(), audit=audit
    )


@router.patch("/{patient_id}/", response_model=PatientPublic)
async def patch_patient(
    patient: PatientDep, changes: PatientUpdate, db: TenantDb, audit: AuditDep
) -> Record:
    """Change some fields of a patient."""
    return await crud.update_patient(
        db=db,
        patient_id=patient.id,
        changes=changes.model_dump(exclude_unset=True),
        audit=audit,
    )


@router.get(
    "/{patient_id}/export/",
    response_class=JSONResponse,
    responses={200: {"content": {FHIR_JSON: {}}, "description": "A FHIR R4 Bundle"}},
)
async def export_patient(
    patient: PatientDep, db: TenantDb, audit: AuditDep, principal: CurrentPrincipal
) -> JSONResponse:
    """The patient's whole record as a FHIR R4 Bundle (`collection`): the Patient, an
    Encounter (and a Procedure for its treatment) per consultation, the cabinets as Locations."""
    consultations, cabinets = await crud.patient_record(db, patient.id)
    audit.touch("export", "patient", [patient.id])
    bundle = patient_bundle(patient, consultations, cabinets, tenant=principal.tenant)
    return JSONResponse(bundle, media_type=FHIR_JSON)


@router.delete("/{patient_id}/", status_code=204, response_class=Response, responses=errors(409))
async def delete_patient(patient: PatientDep, db: TenantDb, audit: AuditDep) -> None:
    """Delete a patient; 409 while consultations reference it."""
    await crud.delete_patient(db=db, patient_id=patient.id, audit=audit)
