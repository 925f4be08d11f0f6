"""The tenant registry's SQLModel family: Tenant (table), TenantCreate/Replace/Update, TenantPublic.

Input models check the shape of each field (DRF messages); rules that need the database or
the settings (uniqueness, reserved names, immutability) live in ``crud``.
"""

import re
from datetime import datetime
from typing import Annotated, Any

from common.db import UTCDateTime, utcnow
from common.openapi import SPACE, not_null, trimmed_text
from pydantic import WithJsonSchema, field_validator
from sqlalchemy import Index, text
from sqlmodel import Field, SQLModel
from sqlmodel.main import SQLModelConfig

NAME_MAX_LENGTH = 255
SCHEMA_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
HOSTNAME_MAX_LENGTH = 253
HOSTNAME_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

BLANK = "This field may not be blank."
NUL_CHARACTERS = "Null characters are not allowed."
NULL = "This field may not be null."
NAME_TOO_LONG = f"Ensure this field has no more than {NAME_MAX_LENGTH} characters."
INVALID_SCHEMA_NAME = (
    "Enter a valid schema name: a lower-case letter followed by up to 62 lower-case letters, "
    "digits or underscores."
)
INVALID_HOSTNAME = (
    "Enter a valid hostname (such as clinic.example.com): no scheme, port, path or spaces."
)


def clean_name(value: Any) -> Any:
    if value is None:
        raise ValueError(NULL)
    if isinstance(value, str):
        value = value.strip()
        if not value:
            raise ValueError(BLANK)
        if "\x00" in value:  # PostgreSQL cannot store it: a 400, not a 500
            raise ValueError(NUL_CHARACTERS)
        if len(value) > NAME_MAX_LENGTH:
            raise ValueError(NAME_TOO_LONG)
    return value


def clean_schema_name(value: Any) -> Any:
    if value is None:
        raise ValueError(NULL)
    if isinstance(value, str):
        value = value.strip()
        if not value:
            raise ValueError(BLANK)
        if not SCHEMA_NAME_RE.fullmatch(value):
            raise ValueError(INVALID_SCHEMA_NAME)
    return value


def normalize_hostname(value: str) -> str:
    return value.strip().lower()


def is_hostname(value: str) -> bool:
    return 0 < len(value) <= HOSTNAME_MAX_LENGTH and all(
        HOSTNAME_LABEL_RE.fullmatch(label) for label in value.split(".")
    )


def clean_domain_url(value: Any) -> Any:
    if value is None:
        raise ValueError(NULL)
    if isinstance(value, str):
        value = normalize_hostname(value)
        if not value:
            raise ValueError(BLANK)
        if not is_hostname(value):
            raise ValueError(INVALID_HOSTNAME)
    return value


# The rules as JSON Schema (trimmed first, as the validators do). What it cannot say - a
# reserved schema_name, a value another tenant holds - stays a 400 of the service.
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
NAME = WithJsonSchema(trimmed_text(NAME_MAX_LENGTH), mode="validation")
SCHEMA_NAME = WithJsonSchema(
    {"type": "string", "pattern": rf"^{SPACE}*[a-z][a-z0-9_]{{0,62}}{SPACE}*$"}, mode="validation"
)
HOSTNAME = WithJsonSchema(
    {
        "type": "string",
        "description": "A hostname (no scheme, port, path or spaces), stored in lower case.",
        "pattern": rf"^{SPACE}*(?=[A-Za-z0-9.-]{{1,{HOSTNAME_MAX_LENGTH}}}{SPACE}*$)"
        rf"{_LABEL}(?:\.{_LABEL})*{SPACE}*$",
    },
    mode="validation",
)


class TenantBase(SQLModel):
    name: Annotated[str, NAME] = Field(max_length=NAME_MAX_LENGTH)
    schema_name: Annotated[str, SCHEMA_NAME] = Field(max_length=63)
    domain_url: Annotated[str, HOSTNAME] = Field(max_length=HOSTNAME_MAX_LENGTH)


class Tenant(TenantBase, table=True):
    """A practice. Deleting one sets ``deleted_at``: the row stays so its schema_name is never reused."""

    __tablename__ = "tenant"
    __table_args__ = (
        # schema_name is unique across live and deleted tenants; domain_url among live ones only.
        Index("ix_tenant_schema_name", "schema_name", unique=True),
        Index(
            "ix_tenant_domain_url_live",
            "domain_url",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)

    @property
    def is_active(self) -> bool:
        return self.deleted_at is None


class TenantCreate(TenantBase):
    _name = field_validator("name", mode="before")(clean_name)
    _schema_name = field_validator("schema_name", mode="before")(clean_schema_name)
    _domain_url = field_validator("domain_url", mode="before")(clean_domain_url)


def strip_schema_name(value: Any) -> Any:
    if value is None:
        raise ValueError(NULL)
    return value.strip() if isinstance(value, str) else value


class TenantReplace(TenantBase):
    """PUT: every writable field. schema_name only has to equal the stored one (crud checks)."""

    _name = field_validator("name", mode="before")(clean_name)
    _schema_name = field_validator("schema_name", mode="before")(strip_schema_name)
    _domain_url = field_validator("domain_url", mode="before")(clean_domain_url)


class TenantUpdate(SQLModel):
    """PATCH: any subset; an explicit null is refused like a bad value."""

    name: Annotated[str, NAME] | None = None
    schema_name: Annotated[str, SCHEMA_NAME] | None = None
    domain_url: Annotated[str, HOSTNAME] | None = None
    model_config = SQLModelConfig(json_schema_extra=not_null("name", "schema_name", "domain_url"))

    _name = field_validator("name", mode="before")(clean_name)
    _schema_name = field_validator("schema_name", mode="before")(strip_schema_name)
    _domain_url = field_validator("domain_url", mode="before")(clean_domain_url)


class TenantPublic(TenantBase):
    id: int
    created_at: datetime
    updated_at: datetime


class TenantResolution(SQLModel):
    """What the internal resolve endpoint tells auth and the edge about a tenant."""

    id: int
    name: str
    schema_name: str
    domain_url: str
    is_active: bool


class TenantStatuses(SQLModel):
    """Every tenant's ``is_active`` by schema_name (live and deleted): the edge's bulk refresh."""

    tenants: dict[str, bool]
