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
from functools import cache
from typing import Any

from common.errors import Conflict, NotFound, ValidationFailed
from common.listing import Filter, Listing, ListQuery, PageResult, SearchField, fetch_page
from prometheus_client import Counter
from sqlalchemy import (
    Column,
    ColumnElement,
    Insert,
    Integer,
    Row,
    Table,
    Text,
    Update,
    bindparam,
    delete,
    func,
    insert,
    inspect,
    literal_column,
    select,
    type_coerce,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningDelete
from sqlmodel import SQLModel

from clinic.audit import AUDIT, ContainsId, RequestAudit, actor_params, event_row, with_event
from clinic.models import (
    MAX_ID,
    Cabinet,
    CabinetCreate,
    CabinetPublic,
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


# Every resource's searchable fields joined by spaces and lower-cased, kept by the database in
# a generated column (migration 0002; trigram-indexed on PostgreSQL): cabinet name and address;
# patient name, email and contact number; consultation diagnosis and treatment. Not mapped on
# the models: nothing writes it and no response carries it. Terms hold no spaces, so matching
# the space-joined fields is matching any one of them.
SEARCH_TEXT = "search_text"


def search_text(model: Model) -> ColumnElement[str]:
    return literal_column(f"{_table(model).name}.{SEARCH_TEXT}", Text)


def day_start(value: date) -> datetime:
    return datetime.combine(value, time.min, tzinfo=UTC)


def next_day_start(value: date) -> datetime | None:
    """The end of ``value``'s (UTC) day as an exclusive bound; None after the last day there is
    (every moment is before it)."""
    return None if value == date.max else day_start(value + timedelta(days=1))


def _consultation_filters() -> dict[str, Filter]:
    columns = COLUMNS[Consultation]
    return {
        "patient": lambda value: columns["patient"] == value,
        "cabinet": lambda value: columns["cabinet"] == value,
        "date_from": lambda value: columns["date"] >= value,
        "date_to": lambda value: columns["date"] <= value,
        "date_until": lambda value: columns["date"] < value,
    }


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
        search=[SearchField(search_text(model))],
        updated_at=columns["updated_at"],
        filters=_consultation_filters() if model is Consultation else {},
    )


LISTINGS: dict[Model, Listing] = {model: _listing(model) for model in COLUMNS}

# The audit trail: newest first; "who saw patient 42" is resource + resource_id (a GIN lookup
# of resource_ids); "who opened it" (any action but a list) reads resource_id itself.
AUDIT_LISTING = Listing(
    table=AUDIT,
    columns=list(AUDIT.c),
    ordering=dict(AUDIT.c.items()),
    search=[SearchField(func.lower(AUDIT.c.username)), SearchField(func.lower(AUDIT.c.request_id))],
    updated_at=AUDIT.c.at,
    filters={
        "resource": lambda value: AUDIT.c.resource == value,
        "action": lambda value: AUDIT.c.action == value,
        "user_id": lambda value: AUDIT.c.user_id == value,
        "resource_id": lambda value: ContainsId(type_coerce(value, Integer)),
        "record_id": lambda value: AUDIT.c.resource_id == value,
        "after": lambda value: AUDIT.c.at >= value,
        "before": lambda value: AUDIT.c.at <= value,
        "before_day": lambda value: AUDIT.c.at < value,
    },
    default_ordering="-at",
)


def audit_filter_values(filters: Mapping[str, Any]) -> Mapping[str, Any]:
    """The audit listing's filters for the API's: events of one record (any action but a list)
    name it in ``resource_id`` as in ``resource_ids`` (``clinic.audit.event_row``), so with
    such an ``action`` the record is looked up there, newest first in its own index
    (migration 0005), rather than among the ids of every list."""
    if "resource_id" not in filters or filters.get("action", "list") == "list":
        return filters
    found = {name: value for name, value in filters.items() if name != "resource_id"}
    found["record_id"] = filters["resource_id"]
    return found


async def list_audit_events(
    *, db: AsyncConnection, query: ListQuery, filters: Mapping[str, Any]
) -> PageResult:
    return await fetch_page(db, AUDIT_LISTING, query, audit_filter_values(filters))


@dataclass(frozen=True, slots=True)
class ConsultationFilters:
    patient: int | None = None
    cabinet: int | None = None
    # Inclusive bounds; a bare date covers the whole (UTC) day.
    date_after: datetime | date | None = None
    date_before: datetime | date | None = None

    def values(self) -> dict[str, Any]:
        """As the consultation listing's named filters take them."""
        found: dict[str, Any] = {}
        for name in ("patient", "cabinet"):
            value = getattr(self, name)
            if value is not None:
                # An id beyond the column's range names nothing (and must not reach
                # PostgreSQL); no record has id 0.
                found[name] = value if 0 < value <= MAX_ID else 0
        if isinstance(self.date_after, datetime):
            found["date_from"] = self.date_after
        elif isinstance(self.date_after, date):
            found["date_from"] = day_start(self.date_after)
        if isinstance(self.date_before, datetime):
            found["date_to"] = self.date_before
        elif isinstance(self.date_before, date) and (until := next_day_start(self.date_before)):
            found["date_until"] = until
        return found


async def list_cabinets(*, db: AsyncConnection, query: ListQuery) -> PageResult:
    return await fetch_page(db, LISTINGS[Cabinet], query)


async def list_patients(*, db: AsyncConnection, query: ListQuery) -> PageResult:
    return await fetch_page(db, LISTINGS[Patient], query)


async def list_consultations(
    *, db: AsyncConnection, query: ListQuery, filters: ConsultationFilters
) -> PageResult:
    return await fetch_page(db, LISTINGS[Consultation], query, filters.values())


# --- single records ---


# Built once: a statement object's cache key is computed once, not on every request.
BY_ID = {
    model: select(*SELECTED[model]).where(COLUMNS[model]["id"] == bindparam("record_id"))
    for model in COLUMNS
}


async def get(db: AsyncConnection, model: Model, record_id: int) -> Row[Any] | None:
    """The record of ``model`` with ``record_id`` in this tenant, or None."""
    if not 0 < record_id <= MAX_ID:
        return None
    return (await db.execute(BY_ID[model], {"record_id": record_id})).first()


# The whole record of one patient (the FHIR export): every consultation, oldest first, and
# the cabinets they took place in. Built once, as the reads above.
CABINET_OF = "cabinet__"  # the cabinet's columns beside its consultation's
# Each consultation with its cabinet, in ONE statement: one snapshot. Read apart, a
# consultation moved to another cabinet between the two reads named a cabinet the second read
# had not returned (the export answered 500 while a colleague edited the record).
PATIENT_RECORD = (
    select(
        *SELECTED[Consultation],
        *(column.label(CABINET_OF + name) for name, column in COLUMNS[Cabinet].items()),
    )
    .join_from(
        _table(Consultation),
        _table(Cabinet),
        COLUMNS[Consultation]["cabinet"] == COLUMNS[Cabinet]["id"],
    )
    .where(COLUMNS[Consultation]["patient"] == bindparam("patient_id"))
    .order_by(COLUMNS[Consultation]["date"], COLUMNS[Consultation]["id"])
)


async def patient_record(
    db: AsyncConnection, patient_id: int
) -> tuple[Sequence[Row[Any]], list[CabinetPublic]]:
    """A patient's consultations and the cabinets they took place in, as they were at one
    moment."""
    rows = (await db.execute(PATIENT_RECORD, {"patient_id": patient_id})).all()
    cabinets = {
        row.cabinet: CabinetPublic.model_validate(
            {name: row._mapping[CABINET_OF + name] for name in COLUMNS[Cabinet]}
        )
        for row in rows
    }
    return rows, list(cabinets.values())


# --- writes, each recorded in the audit trail with the change itself (clinic.audit) ---

RESOURCES: dict[Model, str] = {Cabinet: "cabinet", Patient: "patient", Consultation: "consultation"}
CREATED = {model: RECORDS_CREATED.labels(_table(model).name) for model in COLUMNS}


# Statements are built once (per set of columns changed): values are bound at execution.
@cache
def _insert_statement(model: Model) -> Insert:
    values = {
        column.key: bindparam(column.key, type_=column.type)
        for name, column in COLUMNS[model].items()
        if name != "id"
    }
    return insert(_table(model)).values(values).returning(*SELECTED[model])


@cache
def _update_statement(model: Model, names: frozenset[str]) -> Update:
    columns = COLUMNS[model]
    values = {
        columns[name].key: bindparam(columns[name].key, type_=columns[name].type)
        for name in (*sorted(names), "updated_at")
    }
    return (
        update(_table(model))
        .where(columns["id"] == bindparam("record_id"))
        .values(values)
        .returning(*SELECTED[model])
    )


@cache
def _delete_statement(model: Model) -> ReturningDelete[Any]:
    table = _table(model)
    return delete(table).where(table.c.id == bindparam("record_id")).returning(table.c.id)


async def _write(
    db: AsyncConnection,
    statement: Insert | Update | ReturningDelete[Any],
    params: Mapping[str, Any],
    *,
    audit: RequestAudit,
    action: str,
    model: Model,
    status: int,
) -> Row[Any] | None:
    """Run ``statement`` and record its audit event with it; the row it returned, or None when
    it matched nothing (then no event is written here: the request ends as a 404)."""
    resource = RESOURCES[model]
    audit.touch(action, resource, audit.ids)
    if db.dialect.name == "postgresql":
        # One statement for the change and its event: both or neither.
        audited = with_event(statement, action, resource, status)
        row = (await db.execute(audited, {**params, **actor_params(audit.actor)})).first()
    else:
        # SQLite: the request's write transaction (BEGIN IMMEDIATE) holds both.
        row = (await db.execute(statement, params)).first()
        if row is not None:
            event = event_row(audit.actor, action, resource, [row.id], status)
            await db.execute(insert(AUDIT), event)
    if row is not None:
        audit.ids = [row.id]
        audit.written_with_change()
    return row


def _by_column(model: Model, values: Mapping[str, Any]) -> dict[str, Any]:
    """API field names (``patient``) to column names (``patient_id``)."""
    columns = COLUMNS[model]
    return {columns[name].key: value for name, value in values.items()}


async def _insert(
    db: AsyncConnection, model: Model, values: Mapping[str, Any], audit: RequestAudit
) -> Row[Any]:
    now = utcnow()
    params = {**_by_column(model, values), "created_at": now, "updated_at": now}
    row = await _write(
        db, _insert_statement(model), params, audit=audit, action="create", model=model, status=201
    )
    assert row is not None  # an INSERT ... RETURNING returns its row
    CREATED[model].inc()
    return row


async def _update(
    db: AsyncConnection,
    model: Model,
    record_id: int,
    changes: Mapping[str, Any],
    audit: RequestAudit,
) -> Row[Any]:
    """The record updated; 404 if it is gone (deleted since the route loaded it)."""
    statement = _update_statement(model, frozenset(changes))
    params = {**_by_column(model, changes), "updated_at": utcnow(), "record_id": record_id}
    row = await _write(db, statement, params, audit=audit, action="update", model=model, status=200)
    if row is None:
        raise NotFound()
    return row


async def create_cabinet(
    *, db: AsyncConnection, cabinet_in: CabinetCreate, audit: RequestAudit
) -> Row[Any]:
    return await _insert(db, Cabinet, cabinet_in.model_dump(), audit)


async def create_patient(
    *, db: AsyncConnection, patient_in: PatientCreate, audit: RequestAudit
) -> Row[Any]:
    return await _insert(db, Patient, patient_in.model_dump(), audit)


async def update_cabinet(
    *, db: AsyncConnection, cabinet_id: int, changes: Mapping[str, Any], audit: RequestAudit
) -> Row[Any]:
    return await _update(db, Cabinet, cabinet_id, changes, audit)


async def update_patient(
    *, db: AsyncConnection, patient_id: int, changes: Mapping[str, Any], audit: RequestAudit
) -> Row[Any]:
    return await _update(db, Patient, patient_id, changes, audit)


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
    errors: dict[str, str | list[str]] = {}
    for name, model in (("patient", Patient), ("cabinet", Cabinet)):
        if name in changes and await get(db, model, changes[name]) is None:
            errors[name] = f'Invalid pk "{changes[name]}" - object does not exist.'
    raise ValidationFailed(
        errors or {"non_field_errors": ["A referenced patient or cabinet no longer exists."]}
    )


async def create_consultation(
    *, db: AsyncConnection, consultation_in: ConsultationCreate, audit: RequestAudit
) -> Row[Any]:
    values = consultation_in.model_dump()
    audit.touch("create", "consultation", [])
    _check_id_range(values)
    try:
        return await _insert(db, Consultation, values, audit)
    except sa_exc.IntegrityError:
        await _missing_references(db, values)
        raise


async def update_consultation(
    *,
    db: AsyncConnection,
    consultation_id: int,
    changes: Mapping[str, Any],
    audit: RequestAudit,
) -> Row[Any]:
    _check_id_range(changes)
    try:
        return await _update(db, Consultation, consultation_id, changes, audit)
    except sa_exc.IntegrityError:
        await _missing_references(db, changes)
        raise


async def delete_consultation(
    *, db: AsyncConnection, consultation_id: int, audit: RequestAudit
) -> None:
    params = {"record_id": consultation_id}
    statement = _delete_statement(Consultation)
    row = await _write(
        db, statement, params, audit=audit, action="delete", model=Consultation, status=204
    )
    if row is None:
        raise NotFound()


async def _delete_referenced(
    db: AsyncConnection, model: Model, record_id: int, reference: str, audit: RequestAudit
) -> None:
    """Delete unless consultations reference it (the RESTRICT foreign key refuses): clinical
    records are never deleted as a side effect."""
    params = {"record_id": record_id}
    statement = _delete_statement(model)
    try:
        row = await _write(
            db, statement, params, audit=audit, action="delete", model=model, status=204
        )
    except sa_exc.IntegrityError:
        await db.rollback()
    else:
        if row is None:
            raise NotFound()
        return
    column = COLUMNS[Consultation][reference]
    references = (await db.execute(select(func.count()).where(column == record_id))).scalar_one()
    if references == 1:
        why = "1 consultation references it"
    elif references:
        why = f"{references} consultations reference it"
    else:  # the referencing consultations went away meanwhile
        why = "consultations reference it"
    label = RESOURCES[model].capitalize()
    raise Conflict(
        f"{label} cannot be deleted: {why}. Delete or reassign those consultations first."
    )


async def delete_cabinet(*, db: AsyncConnection, cabinet_id: int, audit: RequestAudit) -> None:
    await _delete_referenced(db, Cabinet, cabinet_id, "cabinet", audit)


async def delete_patient(*, db: AsyncConnection, patient_id: int, audit: RequestAudit) -> None:
    await _delete_referenced(db, Patient, patient_id, "patient", audit)
