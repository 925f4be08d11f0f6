"""Cabinets, patients and consultations: one SQLModel family per resource.

``<X>Base`` holds the writable fields and their rules, ``<X>`` is the table, ``<X>Create`` the
POST and PUT body (every required field), ``<X>Update`` the PATCH body (any subset, no nulls
for required fields) and ``<X>Public`` the response. Tables declare no schema: each request
binds them to its tenant's schema with ``schema_translate_map`` (see ``clinic.db``).
"""

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from common.db import DatetimeOutOfRange, UTCDateTime, as_utc, utcnow
from common.listing import utc_datetime
from common.openapi import SPACE, not_null, trimmed_text
from email_validator import EmailNotValidError, validate_email
from pydantic import BeforeValidator, WithJsonSchema, field_validator
from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel
from sqlmodel.main import SQLModelConfig

NAME_MAX = 255
ADDRESS_MAX = 500
TEXT_MAX = 10_000
EMAIL_MAX = 254
PHONE_MAX = 40
MIN_BIRTHDATE = date(1900, 1, 1)
# The last place on Earth to reach a date (UTC+14): a birthdate is "in the future" only when
# it is still tomorrow there.
LATEST_UTC_OFFSET = timedelta(hours=14)
MAX_ID = 2**31 - 1

PHONE_RE = re.compile(r"\+?[0-9 ().\-]+")
ISO_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")

DATE_FORMAT_MESSAGE = "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."
DATETIME_FORMAT_MESSAGE = (
    "Datetime has wrong format. Use one of these formats instead: "
    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
)
NOT_NULL_MESSAGE = "This field may not be null."
NULL_CHARACTER_MESSAGE = "Null characters are not allowed."


# --- field rules (ValueError sentences become {"field": ["sentence"]}) ---


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("Not a valid string.")
    # As DRF's CharField: PostgreSQL cannot store NUL in text (it would be a 500).
    if "\x00" in value:
        raise ValueError(NULL_CHARACTER_MESSAGE)
    return value.strip()


def _bounded_text(max_length: int, *, allow_blank: bool = False) -> BeforeValidator:
    def check(value: Any) -> str:
        text = _text(value)
        if not text and not allow_blank:
            raise ValueError("This field may not be blank.")
        if len(text) > max_length:
            raise ValueError(f"Ensure this field has no more than {max_length} characters.")
        return text

    return BeforeValidator(check)


def _phone(value: Any) -> str:
    text = _text(value)
    digits = sum(c.isdigit() for c in text)
    if not PHONE_RE.fullmatch(text) or not 6 <= digits <= 20 or len(text) > PHONE_MAX:
        raise ValueError(
            "Enter a valid phone number: 6 to 20 digits, optionally with a leading +, "
            "spaces, dashes, dots or parentheses."
        )
    return text


# The common shape of an address - an ASCII dot-atom, then letters-digits-hyphens labels and an
# alphabetic top-level domain - which email_validator always accepts (tests/test_patients.py
# checks that with Hypothesis); anything else is left to email_validator, which costs ~60 us.
PLAIN_EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:(?!xn--)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
SPECIAL_USE_DOMAINS = ("arpa", "invalid", "local", "localhost", "onion", "test")


def plainly_valid_email(text: str) -> bool:
    """True for an address of the common shape that email_validator would accept too."""
    if len(text) > EMAIL_MAX or not PLAIN_EMAIL_RE.fullmatch(text):
        return False
    local, _, domain = text.rpartition("@")
    tld = domain.rsplit(".", 1)[-1].lower()
    return len(local) <= 64 and len(domain) <= 253 and tld not in SPECIAL_USE_DOMAINS


def _email(value: Any) -> str | None:
    if value is None:
        return None
    text = _text(value)
    if not text:
        return None
    if not plainly_valid_email(text):
        try:
            validate_email(text, check_deliverability=False)
        except EmailNotValidError:
            raise ValueError("Enter a valid email address.") from None
    if len(text) > EMAIL_MAX:
        raise ValueError(f"Ensure this field has no more than {EMAIL_MAX} characters.")
    return text


def _birthdate(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and ISO_DATE_RE.fullmatch(value.strip()):
        try:
            parsed = date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(DATE_FORMAT_MESSAGE) from None
    else:
        raise ValueError(DATE_FORMAT_MESSAGE)
    if parsed > (datetime.now(UTC) + LATEST_UTC_OFFSET).date():
        raise ValueError("Birthdate cannot be in the future.")
    if parsed < MIN_BIRTHDATE:
        raise ValueError("Birthdate cannot be before 1900-01-01.")
    return parsed


def parse_datetime(value: Any) -> datetime:
    """An ISO 8601 date-time as aware UTC; a naive value is UTC."""
    if isinstance(value, datetime):
        return as_utc(value)
    if not isinstance(value, str):
        raise ValueError(DATETIME_FORMAT_MESSAGE)
    try:
        return utc_datetime(value)
    except DatetimeOutOfRange:
        raise
    except ValueError:
        raise ValueError(DATETIME_FORMAT_MESSAGE) from None


def _record_id(value: Any) -> int:
    # Ids arrive as numbers or numeric strings (as DRF accepts); booleans are not ids.
    if isinstance(value, bool):
        raise ValueError("Incorrect type. Expected pk value, received bool.")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ValueError(f"Incorrect type. Expected pk value, received {type(value).__name__}.")


# The JSON Schema of each rule, as exact as JSON Schema can say it (DESIGN.md section 5); what
# it cannot say (a birthdate not in the future, an id that exists) stays a 400 of the service.
PHONE_SCHEMA = {
    "type": "string",
    "description": "6 to 20 digits, optionally a leading +, spaces, dashes, dots, parentheses.",
    "pattern": rf"^{SPACE}*(?=[+0-9 ().\-]{{1,{PHONE_MAX}}}{SPACE}*$)"
    rf"\+?(?:[ ().\-]*[0-9]){{6,20}}[ ().\-]*{SPACE}*$",
}
EMAIL_SCHEMA = {
    "anyOf": [
        {"type": "string", "format": "email", "maxLength": EMAIL_MAX},
        {"type": "string", "pattern": rf"^{SPACE}*$", "description": "blank: no email"},
        {"type": "null"},
    ]
}
# An ISO date (YYYY-MM-DD) from 1900; the service refuses one in the future, or one that is
# not in the calendar (a 400 on the field). The pattern alone: with format "date" beside it,
# generators filter too much to be of use.
BIRTHDATE_SCHEMA = {
    "type": "string",
    "pattern": r"^(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])$",
}
DATETIME_SCHEMA = {"type": "string", "format": "date-time"}
# A record's id, as a number or a numeric string (as DRF accepts); it must exist (else 400).
RECORD_ID_SCHEMA = {
    "anyOf": [{"type": "integer"}, {"type": "string", "pattern": rf"^{SPACE}*[0-9]+{SPACE}*$"}]
}

Name = Annotated[str, _bounded_text(NAME_MAX), WithJsonSchema(trimmed_text(NAME_MAX))]
Address = Annotated[str, _bounded_text(ADDRESS_MAX), WithJsonSchema(trimmed_text(ADDRESS_MAX))]
Phone = Annotated[str, BeforeValidator(_phone), WithJsonSchema(PHONE_SCHEMA)]
Email = Annotated[str | None, BeforeValidator(_email), WithJsonSchema(EMAIL_SCHEMA)]
Birthdate = Annotated[date, BeforeValidator(_birthdate), WithJsonSchema(BIRTHDATE_SCHEMA)]
When = Annotated[datetime, BeforeValidator(parse_datetime), WithJsonSchema(DATETIME_SCHEMA)]
Diagnosis = Annotated[str, _bounded_text(TEXT_MAX), WithJsonSchema(trimmed_text(TEXT_MAX))]
Treatment = Annotated[
    str,
    _bounded_text(TEXT_MAX, allow_blank=True),
    WithJsonSchema(trimmed_text(TEXT_MAX, blank=True)),
]
RecordId = Annotated[int, BeforeValidator(_record_id), WithJsonSchema(RECORD_ID_SCHEMA)]


def _reject_null(value: Any) -> Any:
    if value is None:
        raise ValueError(NOT_NULL_MESSAGE)
    return value


class Timestamps(SQLModel):
    id: int
    created_at: datetime
    updated_at: datetime


def _id_column() -> Any:
    return Field(default=None, primary_key=True)


def _timestamp_column() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


# --- cabinets ---


class CabinetBase(SQLModel):
    name: Name = Field(max_length=NAME_MAX)
    address: Address = Field(max_length=ADDRESS_MAX)
    contact_number: Phone = Field(max_length=PHONE_MAX)


class Cabinet(CabinetBase, table=True):
    # AUTOINCREMENT on SQLite: ids are never reused after a delete, as with PostgreSQL sequences.
    __table_args__ = (
        Index("ix_cabinet_name_id", "name", "id"),
        Index("ix_cabinet_created_at_id", "created_at", "id"),
        Index("ix_cabinet_updated_at_id", "updated_at", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = _id_column()
    created_at: datetime = _timestamp_column()
    updated_at: datetime = _timestamp_column()


class CabinetCreate(CabinetBase):
    pass


class CabinetUpdate(SQLModel):
    name: Name | None = None
    address: Address | None = None
    contact_number: Phone | None = None

    _not_null = field_validator("name", "address", "contact_number", mode="before")(_reject_null)
    model_config = SQLModelConfig(json_schema_extra=not_null("name", "address", "contact_number"))


# Responses declare plain types: stored values are already valid, so the input rules
# (email_validator, regexes, date checks) never run on output.
class CabinetPublic(Timestamps):
    name: str
    address: str
    contact_number: str


# --- patients ---


class PatientBase(SQLModel):
    name: Name = Field(max_length=NAME_MAX)
    birthdate: Birthdate
    contact_number: Phone = Field(max_length=PHONE_MAX)
    email: Email = Field(default=None, max_length=EMAIL_MAX)


class Patient(PatientBase, table=True):
    __table_args__ = (
        Index("ix_patient_name_id", "name", "id"),
        Index("ix_patient_birthdate_id", "birthdate", "id"),
        Index("ix_patient_email_id", "email", "id"),
        Index("ix_patient_contact_number_id", "contact_number", "id"),
        Index("ix_patient_created_at_id", "created_at", "id"),
        Index("ix_patient_updated_at_id", "updated_at", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = _id_column()
    created_at: datetime = _timestamp_column()
    updated_at: datetime = _timestamp_column()


class PatientCreate(PatientBase):
    pass


class PatientUpdate(SQLModel):
    name: Name | None = None
    birthdate: Birthdate | None = None
    contact_number: Phone | None = None
    email: Email = None

    _not_null = field_validator("name", "birthdate", "contact_number", mode="before")(_reject_null)
    model_config = SQLModelConfig(json_schema_extra=not_null("name", "birthdate", "contact_number"))


class PatientPublic(Timestamps):
    name: str
    birthdate: date
    contact_number: str
    email: str | None


# --- consultations ---


class ConsultationBase(SQLModel):
    patient: RecordId
    cabinet: RecordId
    date: When
    diagnosis: Diagnosis
    treatment: Treatment = ""


class Consultation(ConsultationBase, table=True):
    __table_args__ = (
        Index("ix_consultation_patient_id_date", "patient_id", "date"),
        Index("ix_consultation_cabinet_id_date", "cabinet_id", "date"),
        Index("ix_consultation_date_id", "date", "id"),
        Index("ix_consultation_created_at_id", "created_at", "id"),
        Index("ix_consultation_updated_at_id", "updated_at", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = _id_column()
    # The API says ``patient``/``cabinet``; the columns are ``*_id``. RESTRICT: a referenced
    # patient or cabinet cannot disappear, even if a delete races a new consultation.
    patient: int = Field(
        sa_column=Column(
            "patient_id", Integer, ForeignKey("patient.id", ondelete="RESTRICT"), nullable=False
        )
    )
    cabinet: int = Field(
        sa_column=Column(
            "cabinet_id", Integer, ForeignKey("cabinet.id", ondelete="RESTRICT"), nullable=False
        )
    )
    date: datetime = Field(sa_type=UTCDateTime, nullable=False)
    diagnosis: str = Field(max_length=TEXT_MAX)
    treatment: str = Field(default="", max_length=TEXT_MAX)
    created_at: datetime = _timestamp_column()
    updated_at: datetime = _timestamp_column()


class ConsultationCreate(ConsultationBase):
    pass


class ConsultationUpdate(SQLModel):
    patient: RecordId | None = None
    cabinet: RecordId | None = None
    date: When | None = None
    diagnosis: Diagnosis | None = None
    treatment: Treatment | None = None

    _not_null = field_validator(
        "patient", "cabinet", "date", "diagnosis", "treatment", mode="before"
    )(_reject_null)
    model_config = SQLModelConfig(
        json_schema_extra=not_null("patient", "cabinet", "date", "diagnosis", "treatment")
    )


class ConsultationPublic(Timestamps):
    patient: int
    cabinet: int
    date: datetime
    diagnosis: str
    treatment: str


# --- the audit trail (DESIGN.md section 6b) ---

AUDIT_ACTIONS = ("view", "list", "create", "update", "delete", "export")
AUDIT_RESOURCES = ("cabinet", "patient", "consultation")
USERNAME_MAX = 150
REQUEST_ID_MAX = 128
CLIENT_IP_MAX = 64

# The ids an event concerns: an integer array on PostgreSQL (GIN-indexed, so "who saw patient
# 42" is an index lookup), a JSON array on SQLite.
ResourceIds = JSON().with_variant(postgresql.ARRAY(Integer), "postgresql")
# Events outnumber records: 64-bit ids (SQLite's INTEGER PRIMARY KEY is 64-bit already, and
# only it can AUTOINCREMENT).
EventId = BigInteger().with_variant(Integer, "sqlite")


class AuditEvent(SQLModel, table=True):
    """Who accessed which clinical records, when, from where, and how it ended. Append-only:
    the database refuses UPDATE and DELETE (triggers, migration 0004). Never holds a name,
    a diagnosis, a treatment or a search term: ids only."""

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_at_id", "at", "id"),
        Index("ix_audit_event_user_id_at_id", "user_id", "at", "id"),
        Index("ix_audit_event_resource_ids", "resource_ids", postgresql_using="gin"),
        # "Who opened this record": the events of one record (lists, which name many, have
        # no resource_id), newest first (migration 0005).
        Index(
            "ix_audit_event_resource_resource_id_at_id",
            "resource",
            "resource_id",
            "at",
            "id",
            postgresql_where=sql_text("resource_id IS NOT NULL"),
            sqlite_where=sql_text("resource_id IS NOT NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_column=Column(EventId, primary_key=True))
    at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    user_id: int
    username: str = Field(max_length=USERNAME_MAX)
    action: str = Field(max_length=16)
    resource: str = Field(max_length=16)
    # The record of a view, update, delete or export (None for a list).
    resource_id: int | None = None
    # Every record the event concerns: the one above, or the ids a list returned.
    resource_ids: list[int] = Field(sa_column=Column(ResourceIds, nullable=False))
    request_id: str = Field(max_length=REQUEST_ID_MAX)
    client_ip: str = Field(max_length=CLIENT_IP_MAX)
    status: int


class AuditEventPublic(SQLModel):
    id: int
    at: datetime
    user_id: int
    username: str
    action: str
    resource: str
    resource_id: int | None
    resource_ids: list[int]
    request_id: str
    client_ip: str
    status: int
