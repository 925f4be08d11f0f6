"""Reads and writes of cabinets, patients and consultations in one tenant's session.

Functions take the tenant-bound session as ``session=`` and raise domain errors from
``common.errors``. Each write commits once: a failure leaves nothing half-written.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from common.errors import Conflict, ValidationFailed
from common.listing import ListFilters, order_by, search_terms
from prometheus_client import Counter
from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    Text,
    false,
    func,
    inspect,
    literal_column,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import InstrumentedAttribute
from sqlmodel import Session, SQLModel

from clinic.models import (
    MAX_ID,
    Cabinet,
    CabinetCreate,
    Consultation,
    ConsultationCreate,
    Patient,
    PatientCreate,
    utcnow,
)
from clinic.pagination import PageRequest, PageResult, paginate

RECORDS_CREATED = Counter(
    "clinic_records_created_total", "Clinic records created, by resource.", ["resource"]
)

Record = TypeVar("Record", Cabinet, Patient, Consultation)

# Every mapped column of each resource, by attribute name (``patient``, not ``patient_id``):
# what a list selects, and what ``?ordering=`` accepts - every field a list shows (DESIGN.md;
# DRF's OrderingFilter offers the serializer's fields too). Patients' are all indexed with the
# id (migrations 0001, 0003); cabinets are few per practice, and consultations' free text (up
# to 10,000 characters) is too long for a b-tree, so those sorts run without an index. Other
# names are ignored, as in DRF. Built once: lists are the hot path. Search reads SEARCH_TEXT.
LIST_COLUMNS: dict[type[SQLModel], dict[str, InstrumentedAttribute[Any]]] = {
    model: {
        attribute.key: getattr(model, attribute.key) for attribute in inspect(model).column_attrs
    }
    for model in (Cabinet, Patient, Consultation)
}


@dataclass(frozen=True, slots=True)
class ConsultationFilters(ListFilters):
    patient: int | None = None
    cabinet: int | None = None
    # Inclusive bounds; a bare date covers the whole (UTC) day.
    date_after: datetime | date | None = None
    date_before: datetime | date | None = None


# --- listing ---


def _column(model: type[SQLModel], name: str) -> InstrumentedAttribute[Any]:
    column: InstrumentedAttribute[Any] = getattr(model, name)
    return column


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Every resource's searchable fields joined by spaces and lower-cased, kept by the database in
# a generated column (migration 0002; trigram-indexed on PostgreSQL): cabinet name and address;
# patient name, email and contact number; consultation diagnosis and treatment. Not mapped on
# the models: nothing writes it and no response carries it.
SEARCH_TEXT = "search_text"


def search_text(model: type[SQLModel]) -> ColumnElement[str]:
    table = str(model.__tablename__)
    return literal_column(f"{table}.{SEARCH_TEXT}", Text)


def search_conditions(model: type[SQLModel], search: str) -> list[ColumnElement[bool]]:
    # As DRF's SearchFilter: terms split on spaces and commas; every term must match a field,
    # case-insensitively. Terms hold no spaces, so matching the space-joined fields is matching
    # any one of them; lower() of the pattern is the database's, as for the stored text.
    terms = search_terms(search)
    if not terms:
        return []
    text = search_text(model)
    return [text.like(func.lower(f"%{_escape_like(term)}%"), escape="\\") for term in terms]


def _list(
    session: Session,
    model: type[Record],
    filters: ListFilters,
    conditions: Sequence[ColumnElement[bool]],
    page: PageRequest,
) -> PageResult[Row[Any]]:
    columns = LIST_COLUMNS[model]
    where = [*conditions, *search_conditions(model, filters.search)]
    if filters.updated_after is not None:
        where.append(columns["updated_at"] >= filters.updated_after)
    # The count uses exactly the same filters as the page. The page selects the columns, not
    # the entity: rows are only serialised, and building 50 ORM instances per page (identity
    # map, instrumentation) was a fifth of clinic's CPU on lists.
    rows: Select[Any] = select(*columns.values()).where(*where)
    rows = rows.order_by(*order_by(filters.ordering, columns))
    count: Select[int] = select(func.count()).select_from(model).where(*where)
    return paginate(session, rows, count, page)


def list_cabinets(
    *, session: Session, filters: ListFilters, page: PageRequest
) -> PageResult[Row[Any]]:
    return _list(session, Cabinet, filters, [], page)


def list_patients(
    *, session: Session, filters: ListFilters, page: PageRequest
) -> PageResult[Row[Any]]:
    return _list(session, Patient, filters, [], page)


def _id_equals(column: InstrumentedAttribute[Any], value: int) -> ColumnElement[bool]:
    # An id beyond the column's range names nothing (and must not reach PostgreSQL).
    return column == value if 0 < value <= MAX_ID else false()


def _day_start(value: date) -> datetime:
    return datetime.combine(value, time.min, tzinfo=UTC)


def list_consultations(
    *, session: Session, filters: ConsultationFilters, page: PageRequest
) -> PageResult[Row[Any]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.patient is not None:
        conditions.append(_id_equals(_column(Consultation, "patient"), filters.patient))
    if filters.cabinet is not None:
        conditions.append(_id_equals(_column(Consultation, "cabinet"), filters.cabinet))
    when = _column(Consultation, "date")
    if isinstance(filters.date_after, datetime):
        conditions.append(when >= filters.date_after)
    elif isinstance(filters.date_after, date):
        conditions.append(when >= _day_start(filters.date_after))
    if isinstance(filters.date_before, datetime):
        conditions.append(when <= filters.date_before)
    elif isinstance(filters.date_before, date):
        conditions.append(when < _day_start(filters.date_before) + timedelta(days=1))
    return _list(session, Consultation, filters, conditions, page)


# --- single records ---


def _get(session: Session, model: type[Record], record_id: int, for_update: bool) -> Record | None:
    if not 0 < record_id <= MAX_ID:
        return None
    # FOR UPDATE on PostgreSQL: concurrent writes of one record queue, so a PUT never mixes
    # with another. SQLite ignores it; its write sessions hold the database lock instead.
    return session.get(model, record_id, with_for_update=for_update)


def get_cabinet(*, session: Session, cabinet_id: int, for_update: bool = False) -> Cabinet | None:
    return _get(session, Cabinet, cabinet_id, for_update)


def get_patient(*, session: Session, patient_id: int, for_update: bool = False) -> Patient | None:
    return _get(session, Patient, patient_id, for_update)


def get_consultation(
    *, session: Session, consultation_id: int, for_update: bool = False
) -> Consultation | None:
    return _get(session, Consultation, consultation_id, for_update)


def _commit(session: Session, references: Mapping[str, Any] | None = None) -> None:
    try:
        session.commit()
    except sa_exc.IntegrityError as exc:
        session.rollback()
        # Only the consultation foreign keys can fail here: a patient or cabinet deleted
        # between our check and the insert. Checked again, the error names the field.
        if references:
            _check_references(session, references)
        raise ValidationFailed(
            {"non_field_errors": ["A referenced patient or cabinet no longer exists."]}
        ) from exc


def _create(
    session: Session, record: Record, resource: str, references: Mapping[str, Any] | None = None
) -> Record:
    record.created_at = record.updated_at = utcnow()
    session.add(record)
    _commit(session, references)
    RECORDS_CREATED.labels(resource).inc()
    return record


def _update(session: Session, record: Record, changes: Mapping[str, Any]) -> Record:
    for name, value in changes.items():
        setattr(record, name, value)
    record.updated_at = utcnow()
    session.add(record)
    _commit(session, changes)
    return record


def create_cabinet(*, session: Session, cabinet_in: CabinetCreate) -> Cabinet:
    return _create(session, Cabinet.model_validate(cabinet_in), "cabinet")


def update_cabinet(*, session: Session, cabinet: Cabinet, changes: Mapping[str, Any]) -> Cabinet:
    return _update(session, cabinet, changes)


def create_patient(*, session: Session, patient_in: PatientCreate) -> Patient:
    return _create(session, Patient.model_validate(patient_in), "patient")


def update_patient(*, session: Session, patient: Patient, changes: Mapping[str, Any]) -> Patient:
    return _update(session, patient, changes)


def _check_references(session: Session, changes: Mapping[str, Any]) -> None:
    """``patient`` and ``cabinet`` must name records of this tenant (400 on the field)."""
    errors: dict[str, str] = {}
    if "patient" in changes and _get(session, Patient, changes["patient"], False) is None:
        errors["patient"] = f'Invalid pk "{changes["patient"]}" - object does not exist.'
    if "cabinet" in changes and _get(session, Cabinet, changes["cabinet"], False) is None:
        errors["cabinet"] = f'Invalid pk "{changes["cabinet"]}" - object does not exist.'
    if errors:
        raise ValidationFailed(errors)


def create_consultation(*, session: Session, consultation_in: ConsultationCreate) -> Consultation:
    references = consultation_in.model_dump(include={"patient", "cabinet"})
    _check_references(session, references)
    record = Consultation.model_validate(consultation_in)
    return _create(session, record, "consultation", references)


def update_consultation(
    *, session: Session, consultation: Consultation, changes: Mapping[str, Any]
) -> Consultation:
    _check_references(session, changes)
    return _update(session, consultation, changes)


def delete_consultation(*, session: Session, consultation: Consultation) -> None:
    session.delete(consultation)
    session.commit()


def _delete_referenced(
    session: Session, record: Patient | Cabinet, reference: str, label: str
) -> None:
    """Delete unless consultations reference it: records are never deleted as a side effect."""
    column = _column(Consultation, reference)
    references = session.execute(
        select(func.count()).select_from(Consultation).where(column == record.id)
    ).scalar_one()
    if references:
        noun = "consultation references" if references == 1 else "consultations reference"
        raise Conflict(
            f"{label} cannot be deleted: {references} {noun} it. "
            "Delete or reassign those consultations first."
        )
    session.delete(record)
    try:
        session.commit()
    except sa_exc.IntegrityError as exc:
        # A consultation was added between the count and the delete; the RESTRICT key held.
        session.rollback()
        raise Conflict(
            f"{label} cannot be deleted: consultations reference it. "
            "Delete or reassign those consultations first."
        ) from exc


def delete_cabinet(*, session: Session, cabinet: Cabinet) -> None:
    _delete_referenced(session, cabinet, "cabinet", "Cabinet")


def delete_patient(*, session: Session, patient: Patient) -> None:
    _delete_referenced(session, patient, "patient", "Patient")
