"""Tables and API schemas of the auth service (one SQLModel family per resource)."""

import re
import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from common.db import UTCDateTime, utcnow
from common.openapi import NON_SPACE, SPACE, not_null, trimmed_text
from email_validator import EmailNotValidError, validate_email
from pydantic import ValidationInfo, WithJsonSchema, field_validator
from sqlalchemy import Column, ForeignKey, Index, Integer, Text
from sqlmodel import Field, SQLModel
from sqlmodel.main import SQLModelConfig

from auth.passwords import MAX_LENGTH as PASSWORD_MAX_LENGTH
from auth.passwords import password_problems, too_long

USERNAME_MAX_LENGTH = 150
EMAIL_MAX_LENGTH = 254
USERNAME_PATTERN = re.compile(r"^[\w.@+-]+\Z")
SCHEMA_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
BLANK = "This field may not be blank."
NULL_CHARACTER = "Null characters are not allowed."
SURROGATE_CHARACTER = "Unpaired surrogate characters (\\ud800-\\udfff) are not allowed."


def _timestamp(*, nullable: bool = False, index: bool = False) -> Any:
    # Aware UTC on both backends (SQLite stores naive UTC text).
    column: Column[datetime] = Column(UTCDateTime(), nullable=nullable, index=index)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utcnow, sa_column=column)


class Role(StrEnum):
    ADMIN = "admin"
    STAFF = "staff"


def normalize_username(username: str) -> str:
    """Usernames as Django stores them: trimmed and NFKC-normalised."""
    return unicodedata.normalize("NFKC", username.strip())


def username_key(username: str) -> str:
    """The case-insensitive identity of a username, computed here so both backends agree
    (SQLite's ``lower()`` only folds ASCII)."""
    return normalize_username(username).casefold()


# The field rules as JSON Schema (the validators below stay the one enforcement). What it cannot
# say - a password's strength, a username or invitation in use - stays a 400 of the service.
USERNAME = WithJsonSchema(
    {"type": "string", "pattern": rf"^{SPACE}*[\w.@+-]{{1,{USERNAME_MAX_LENGTH}}}{SPACE}*$"}
)
EMAIL = WithJsonSchema({"type": "string", "format": "email", "maxLength": EMAIL_MAX_LENGTH})
PASSWORD = WithJsonSchema({"type": "string", "minLength": 1, "maxLength": PASSWORD_MAX_LENGTH})
NOT_BLANK = WithJsonSchema({"type": "string", "pattern": NON_SPACE})
ROLE = WithJsonSchema({"enum": ["admin", "staff"]})
TENANT = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string", "pattern": rf"^{SPACE}*[a-z][a-z0-9_]{{0,62}}{SPACE}*$"},
            {"type": "string", "pattern": rf"^{SPACE}*$", "description": "blank: the caller's"},
            {"type": "null"},
        ]
    }
)


class RequestBody(SQLModel):
    """A request body: no text field may hold a NUL character (DRF's CharField refuses it, and
    PostgreSQL would refuse it in a query: a 500), nor half of a surrogate pair (JSON's
    ``"\\ud800"`` decodes to one; it has no UTF-8 form, so the database driver and the password
    hasher would fail on it: a 500). Checked before any other rule of a field."""

    @field_validator("*", mode="before")
    @classmethod
    def _text_that_can_be_stored(cls, value: object) -> object:
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError(NULL_CHARACTER)
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(SURROGATE_CHARACTER) from None
        return value


# ---- user ---------------------------------------------------------------------------------


class UserBase(SQLModel):
    username: str = Field(max_length=USERNAME_MAX_LENGTH)
    email: str = Field(max_length=EMAIL_MAX_LENGTH)


class User(UserBase, table=True):
    __tablename__ = "user"

    id: int | None = Field(default=None, primary_key=True)
    username_key: str = Field(max_length=USERNAME_MAX_LENGTH, unique=True)
    tenant: str = Field(max_length=63, index=True)
    role: str = Field(default=Role.STAFF, max_length=16)
    is_active: bool = False
    is_superuser: bool = False
    password_hash: str = Field(max_length=255)
    date_joined: datetime = _timestamp()
    updated_at: datetime = _timestamp()


def normalize_email(value: str) -> str:
    """An email as users and invitations store it (DRF's EmailField rules)."""
    value = value.strip()
    if not value:
        raise ValueError(BLANK)
    if len(value) > EMAIL_MAX_LENGTH:
        raise ValueError(too_long(EMAIL_MAX_LENGTH))
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        raise ValueError("Enter a valid email address.") from None


class UserRegister(RequestBody):
    """Registration body. Field order matters: the password is checked against the others."""

    username: Annotated[str, USERNAME]
    email: Annotated[str, EMAIL]
    password: Annotated[str, PASSWORD]
    # An invitation's token: the account is created active, with the invitation's role, in
    # its tenant. Without one: a pending staff account (an admin of the tenant activates it).
    invitation: str | None = None

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        # Measured before normalising too, so a huge value costs nothing more than its length.
        if len(value.strip()) > USERNAME_MAX_LENGTH:
            raise ValueError(too_long(USERNAME_MAX_LENGTH))
        value = normalize_username(value)
        if not value:
            raise ValueError(BLANK)
        if len(value) > USERNAME_MAX_LENGTH:
            raise ValueError(too_long(USERNAME_MAX_LENGTH))
        if not USERNAME_PATTERN.match(value):
            raise ValueError(
                "Enter a valid username. This value may contain only letters, "
                "numbers, and @/./+/-/_ characters."
            )
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalize_email(value)

    @field_validator("password")
    @classmethod
    def _password(cls, value: str, info: ValidationInfo) -> str:
        # Passwords are never trimmed: every character is the user's choice.
        if not value:
            raise ValueError(BLANK)
        problems = password_problems(
            value, username=info.data.get("username"), email=info.data.get("email")
        )
        if problems:
            # One ValueError carries one message; the first problem is the most basic one.
            raise ValueError(problems[0])
        return value


class UserPublic(SQLModel):
    id: int
    username: str
    email: str
    tenant: str
    role: Role
    is_active: bool


class UserDetail(UserPublic):
    is_superuser: bool
    date_joined: datetime
    # Lists take ?updated_after=: a client syncing users needs the value it compares with.
    updated_at: datetime


class UserUpdate(RequestBody):
    is_active: bool | None = None
    role: Annotated[str, ROLE] | None = None
    model_config = SQLModelConfig(json_schema_extra=not_null("is_active", "role"))

    @field_validator("is_active", "role", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("This field may not be null.")
        return value

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if value not in {role.value for role in Role}:
            raise ValueError(f'"{value}" is not a valid choice.')
        return value


# ---- invitations --------------------------------------------------------------------------


class Invitation(SQLModel, table=True):
    """An invitation into a tenant with a role; only a SHA-256 of its token is stored."""

    __tablename__ = "invitation"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    email: str = Field(max_length=EMAIL_MAX_LENGTH)
    role: str = Field(max_length=16)
    tenant: str = Field(max_length=63, index=True)
    created_by: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("user.id", ondelete="SET NULL"), nullable=True),
    )
    used_by: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("user.id", ondelete="SET NULL"), nullable=True),
    )
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()
    expires_at: datetime = _timestamp()
    used_at: datetime | None = _timestamp(nullable=True)
    revoked_at: datetime | None = _timestamp(nullable=True)


class InvitationCreate(RequestBody):
    email: Annotated[str, EMAIL]
    role: Annotated[str, ROLE]
    # A schema_name: superusers invite into any tenant; an admin only into its own (the
    # default when absent).
    tenant: Annotated[str | None, TENANT] = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalize_email(value)

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if value not in {role.value for role in Role}:
            raise ValueError(f'"{value[:32]}" is not a valid choice.')
        return value

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not SCHEMA_NAME.match(value.strip()):
            raise ValueError(f'Unknown or inactive tenant "{value.strip()[:63]}".')
        return value.strip()


class InvitationPublic(SQLModel):
    """An invitation as lists show it: never its token."""

    id: int
    email: str
    role: Role
    tenant: str
    expires_at: datetime
    created_at: datetime
    updated_at: datetime


class InvitationCreated(InvitationPublic):
    """The answer to its creation: the only time the token is shown."""

    token: str


# ---- tokens -------------------------------------------------------------------------------


class LoginRequest(RequestBody):
    username: Annotated[str, WithJsonSchema(trimmed_text(USERNAME_MAX_LENGTH))]
    password: Annotated[str, PASSWORD]

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(BLANK)
        if len(value.strip()) > USERNAME_MAX_LENGTH:  # no account has a longer one
            raise ValueError(too_long(USERNAME_MAX_LENGTH))
        return value

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        if not value:  # spaces are a password like any other
            raise ValueError(BLANK)
        if len(value) > PASSWORD_MAX_LENGTH:  # no account has a longer one
            raise ValueError(too_long(PASSWORD_MAX_LENGTH))
        return value


class RefreshRequest(RequestBody):
    refresh: Annotated[str, NOT_BLANK]

    @field_validator("refresh")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(BLANK)
        return value.strip()


class TokenPair(SQLModel):
    access: str
    refresh: str


class RefreshToken(SQLModel, table=True):
    """One issued refresh token; a family is every token rotated from one login."""

    __tablename__ = "refresh_token"

    jti: str = Field(primary_key=True, max_length=64)
    family_id: str = Field(max_length=64, index=True)
    user_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("user.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    created_at: datetime = _timestamp()
    expires_at: datetime = _timestamp(index=True)
    revoked_at: datetime | None = _timestamp(nullable=True)


class PublishedKey(SQLModel, table=True):
    """A public signing key the JWKS lists: the key each auth process signs with, and every
    previous one until the last token it may have signed has expired (``expires_at``, renewed
    while a process signs with it). Never a private key: that one is a secret (``auth.keys``)."""

    __tablename__ = "published_key"

    kid: str = Field(primary_key=True, max_length=64)
    # The JWK as JSON: {"kty", "crv", "x", "kid", "alg", "use"}.
    jwk: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _timestamp()
    expires_at: datetime = _timestamp(index=True)


class LegacySigningKey(SQLModel, table=True):
    """Where the first release kept the private key it generated, in clear. Emptied at the
    first start of this release (the key exported to the key file, or kept as a previous
    public key: nobody is logged out); the next release drops the table."""

    __tablename__ = "signing_key"

    id: int | None = Field(default=None, primary_key=True)
    # One row per name: the unique constraint settles a race between replicas starting at once.
    name: str = Field(max_length=32, unique=True)
    kid: str = Field(max_length=64)
    private_pem: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _timestamp()


class LoginFailure(SQLModel, table=True):
    """A failed login, kept for the throttling window; shared by every replica."""

    __tablename__ = "login_failure"
    __table_args__ = (
        Index("ix_login_failure_username_key_failed_at", "username_key", "failed_at"),
        Index("ix_login_failure_address_failed_at", "address", "failed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    username_key: str = Field(max_length=USERNAME_MAX_LENGTH)
    address: str = Field(max_length=64)
    failed_at: datetime = _timestamp(index=True)


class RegistrationAttempt(SQLModel, table=True):
    """A registration from one client address, kept for the throttling window."""

    __tablename__ = "registration_attempt"
    __table_args__ = (
        Index("ix_registration_attempt_address_attempted_at", "address", "attempted_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(max_length=64)
    attempted_at: datetime = _timestamp(index=True)
