"""Reads and writes of cabinets, patients and consultations on one tenant's connection.

Functions take the tenant's connection as ``db=`` (``clinic.db``: autocommit for reads, one
transaction for writes) and raise domain errors from ``common.errors``. Every write is one
statement that returns the row it wrote (``INSERT/UPDATE ... RETURNING``); the database's
foreign keys refuse a consultation whose patient or cabinet does not exist, and a delete of a
patient or cabinet that consultations still reference (RESTRICT): only then do we ask which
reference failed, to name the field in the 400 or count the references in the 409.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from common.errors import Conflict, NotFound, ValidationFailed
from common.listing import Listing, ListQuery, PageResult, fetch_page
from prometheus_client import Counter
from sqlalchemy import (
    Column,
    ColumnElement,
    Row,
    Table,
    Text,
    delete,
    false,
    func,
    insert,
    inspect,
    literal_column,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel

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

RECORDS_CREATED = Counter(
    "clinic_records_created_total", "Clinic records created, by resource.", ["resource"]
)

# Every clinic resource: its table, its columns by API name (``patient``, not ``patient_id``).
Model = type[SQLModel]


def _table(model: Model) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


def _api_columns(model: Model) -> dict[str, Column[Any]]:
    mapper = inspect(model)
    return {attribute.key: attribute.columns[0] for attribute in mapper.column_attrs}


COLUMNS: dict[Model, dict[str, Column[Any]]] = {
    model: _api_columns(model) for model in (Cabinet, Patient, Consultation)
}
# What a read selects: every column, named as the API names it.
SELECTED: dict[Model, list[ColumnElement[Any]]] = {
    model: [column.label(name) for name, column in columns.items()]
    for model, columns in COLUMNS.items()
}


# --- listing ---


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Every resource's searchable fields joined by spaces and lower-cased, kept by the database in
# a generated column (migration 0002; trigram-indexed on PostgreSQL): cabinet name and address;
# patient name, email and contact number; consultation diagnosis and treatment. Not mapped on
# the models: nothing writes it and no response carries it.
SEARCH_TEXT = "search_text"


def search_text(model: Model) -> ColumnElement[str]:
    return literal_column(f"{_table(model).name}.{SEARCH_TEXT}", Text)


def search_conditions(model: Model, terms: Sequence[str]) -> list[ColumnElement[bool]]:
    # As DRF's SearchFilter: every term must match a field, case-insensitively. Terms hold no
    # spaces, so matching the space-joined fields is matching any one of them; lower() of the
    # pattern is the database's, as for the stored text.
    text = search_text(model)
    return [text.like(func.lower(f"%{_escape_like(term)}%"), escape="\\") for term in terms]


def _listing(model: Model) -> Listing:
    # Every field a list shows is orderable (DESIGN.md; DRF's OrderingFilter offers the
    # serializer's fields). Patients' are all indexed with the id (migrations 0001, 0003);
    # cabinets are few per practice, and consultations' free text (up to 10,000 characters) is
    # too long for a b-tree, so those sorts run without an index.
    columns = COLUMNS[model]
    return Listing(
        table=_table(model),
        columns=SELECTED[model],
        ordering=columns,
        search=lambda terms: search_conditions(model, terms),
        updated_at=columns["updated_at"],
    )


LISTINGS: dict[Model, Listing] = {model: _listing(model) for model in COLUMNS}


@dataclass(frozen=True, slots=True)
class ConsultationFilters:
    patient: int | None = None
    cabinet: int | None = None
    # Inclusive bounds; a bare date covers the whole (UTC) day.
    date_after: datetime | date | None = None
    date_before: datetime | date | None = None


async def list_cabinets(*, db: AsyncConnection, query: ListQuery) -> PageResult:
    return await fetch_page(db, LISTINGS[Cabinet], query)


async def list_patients(*, db: AsyncConnection, query: ListQuery) -> PageResult:
    return await fetch_page(db, LISTINGS[Patient], query)


def _id_equals(column: Column[Any], value: int) -> ColumnElement[bool]:
    # An id beyond the column's range names nothing (and must not reach PostgreSQL).
    return column == value if 0 < value <= MAX_ID else false()


def _day_start(value: date) -> datetime:
    return datetime.combine(value, time.min, tzinfo=UTC)


def consultation_conditions(filters: ConsultationFilters) -> list[ColumnElement[bool]]:
    columns = COLUMNS[Consultation]
    conditions: list[ColumnElement[bool]] = []
    if filters.patient is not None:
        conditions.append(_id_equals(columns["patient"], filters.patient))
    if filters.cabinet is not None:
        conditions.append(_id_equals(columns["cabinet"], filters.cabinet))
    when = columns["date"]
    if isinstance(filters.date_after, datetime):
        conditions.append(when >= filters.date_after)
    elif isinstance(filters.date_after, date):
        conditions.append(when >= _day_start(filters.date_after))
    if isinstance(filters.date_before, datetime):
        conditions.append(when <= filters.date_before)
    elif isinstance(filters.date_before, date):
        conditions.append(when < _day_start(filters.date_before) + timedelta(days=1))
    return conditions


async def list_consultations(
    *, db: AsyncConnection, query: ListQuery, filters: ConsultationFilters
) -> PageResult:
    return await fetch_page(db, LISTINGS[Consultation], query, consultation_conditions(filters))


# --- single records ---


async def get(db: AsyncConnection, model: Model, record_id: int) -> Row[Any] | None:
    """The record of ``model`` with ``record_id`` in this tenant, or None."""
    if not 0 < record_id <= MAX_ID:
        return None
    statement = select(*SELECTED[model]).where(COLUMNS[model]["id"] == record_id)
    return (await db.execute(statement)).first()


async def _insert(db: AsyncConnection, model: Model, values: Mapping[str, Any]) -> Row[Any]:
    now = utcnow()
    columns = COLUMNS[model]
    statement = (
        insert(_table(model))
        .values({columns[name].key: value for name, value in values.items()})
        .values(created_at=now, updated_at=now)
        .returning(*SELECTED[model])
    )
    row = (await db.execute(statement)).one()
    RECORDS_CREATED.labels(_table(model).name).inc()
    return row


async def _update(
    db: AsyncConnection, model: Model, record_id: int, changes: Mapping[str, Any]
) -> Row[Any]:
    """The record updated; 404 if it is gone (deleted since the route loaded it)."""
    columns = COLUMNS[model]
    statement = (
        update(_table(model))
        .where(columns["id"] == record_id)
        .values({columns[name].key: value for name, value in changes.items()})
        .values(updated_at=utcnow())
        .returning(*SELECTED[model])
    )
    row = (await db.execute(statement)).first()
    if row is None:
        raise NotFound()
    return row


async def create_cabinet(*, db: AsyncConnection, cabinet_in: CabinetCreate) -> Row[Any]:
    return await _insert(db, Cabinet, cabinet_in.model_dump())


async def create_patient(*, db: AsyncConnection, patient_in: PatientCreate) -> Row[Any]:
    return await _insert(db, Patient, patient_in.model_dump())


async def update_cabinet(
    *, db: AsyncConnection, cabinet_id: int, changes: Mapping[str, Any]
) -> Row[Any]:
    return await _update(db, Cabinet, cabinet_id, changes)


async def update_patient(
    *, db: AsyncConnection, patient_id: int, changes: Mapping[str, Any]
) -> Row[Any]:
    return await _update(db, Patient, patient_id, changes)


def _check_id_range(changes: Mapping[str, Any]) -> None:
    """A reference beyond the id column's range names nothing (and must not reach the
    database, which would refuse the parameter itself)."""
    errors = {
        name: f'Invalid pk "{changes[name]}" - object does not exist.'
        for name in ("patient", "cabinet")
        if name in changes and not 0 < changes[name] <= MAX_ID
    }
    if errors:
        raise ValidationFailed(errors)


async def _missing_references(db: AsyncConnection, changes: Mapping[str, Any]) -> None:
    """After a foreign key refused a write: 400 on each of ``patient``/``cabinet`` that names
    no record of this tenant. The failed statement aborted the transaction: roll it back first.
    """
    await db.rollback()
    errors: dict[str, str] = {}
    for name, model in (("patient", Patient), ("cabinet", Cabinet)):
        if name in changes and await get(db, model, changes[name]) is None:
            errors[name] = f'Invalid pk "{changes[name]}" - object does not exist.'
    raise ValidationFailed(
        errors or {"non_field_errors": ["A referenced patient or cabinet no longer exists."]}
    )


async def create_consultation(
    *, db: AsyncConnection, consultation_in: ConsultationCreate
) -> Row[Any]:
    values = consultation_in.model_dump()
    _check_id_range(values)
    try:
        return await _insert(db, Consultation, values)
    except sa_exc.IntegrityError:
        await _missing_references(db, values)
        raise


async def update_consultation(
    *, db: AsyncConnection, consultation_id: int, changes: Mapping[str, Any]
) -> Row[Any]:
    _check_id_range(changes)
    try:
        return await _update(db, Consultation, consultation_id, changes)
    except sa_exc.IntegrityError:
        await _missing_references(db, changes)
        raise


async def delete_consultation(*, db: AsyncConnection, consultation_id: int) -> None:
    statement = delete(_table(Consultation)).where(COLUMNS[Consultation]["id"] == consultation_id)
    await db.execute(statement)


async def _delete_referenced(
    db: AsyncConnection, model: Model, record_id: int, reference: str, label: str
) -> None:
    """Delete unless consultations reference it (the RESTRICT foreign key refuses): clinical
    records are never deleted as a side effect."""
    try:
        await db.execute(delete(_table(model)).where(COLUMNS[model]["id"] == record_id))
        return
    except sa_exc.IntegrityError:
        await db.rollback()
    column = COLUMNS[Consultation][reference]
    references = (await db.execute(select(func.count()).where(column == record_id))).scalar_one()
    if references == 1:
        why = "1 consultation references it"
    elif references:
        why = f"{references} consultations reference it"
    else:  # the referencing consultations went away meanwhile
        why = "consultations reference it"
    raise Conflict(
        f"{label} cannot be deleted: {why}. Delete or reassign those consultations first."
    )


async def delete_cabinet(*, db: AsyncConnection, cabinet_id: int) -> None:
    await _delete_referenced(db, Cabinet, cabinet_id, "cabinet", "Cabinet")


async def delete_patient(*, db: AsyncConnection, patient_id: int) -> None:
    await _delete_referenced(db, Patient, patient_id, "patient", "Patient")
