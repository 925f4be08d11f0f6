"""Invitations: created by an admin or a superuser (or an operator), used once at
registration, listed while open, revoked."""

import hashlib
import secrets
from datetime import datetime, timedelta

from common.db import utcnow
from common.errors import ValidationFailed
from common.listing import Listing, ListQuery, PageResult, SearchField, fetch_page
from sqlalchemy import ColumnElement, Table, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from auth.models import Invitation, InvitationPublic, User

INVITATION_INVALID = "Invalid invitation."
INVITATION_USED = "This invitation has already been used."
INVITATION_REVOKED = "This invitation has been revoked."
INVITATION_EXPIRED = "This invitation has expired."
INVITATION_OTHER_EMAIL = "This invitation is for another email address."
# Tokens are 43 characters; anything much longer is not one (and is not worth hashing).
MAX_TOKEN_LENGTH = 128


def _token_hash(token: str) -> str:
    # 256 random bits need no slow hash: SHA-256 makes a leaked table useless, and lookups fast.
    return hashlib.sha256(token.encode()).hexdigest()


async def create_invitation(
    *,
    session: AsyncSession,
    email: str,
    role: str,
    tenant: str,
    lifetime: int,
    created_by: int | None = None,
) -> tuple[Invitation, str]:
    """An invitation of ``email`` into ``tenant`` (a schema_name) with ``role``, usable for
    ``lifetime`` seconds, and its token: shown once, only a hash of it is stored."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    invitation = Invitation(
        token_hash=_token_hash(token),
        email=email,
        role=role,
        tenant=tenant,
        created_by=created_by,
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(seconds=lifetime),
    )
    session.add(invitation)
    await session.commit()
    return invitation, token


async def get_invitation(*, session: AsyncSession, token: str, email: str) -> Invitation:
    """The open invitation ``token`` names, for ``email`` (compared case-insensitively);
    a 400 on ``invitation`` for an unknown, used, revoked or expired one, or another email."""
    invitation = None
    if len(token) <= MAX_TOKEN_LENGTH:
        statement = select(Invitation).where(Invitation.token_hash == _token_hash(token))
        invitation = (await session.exec(statement)).first()
    if invitation is None:
        problem = INVITATION_INVALID
    elif invitation.used_at is not None:
        problem = INVITATION_USED
    elif invitation.revoked_at is not None:
        problem = INVITATION_REVOKED
    elif invitation.expires_at <= utcnow():
        problem = INVITATION_EXPIRED
    elif invitation.email.casefold() != email.casefold():
        problem = INVITATION_OTHER_EMAIL
    else:
        return invitation
    raise ValidationFailed({"invitation": problem})


def _is_open(now: datetime) -> list[ColumnElement[bool]]:
    return [
        col(Invitation.used_at).is_(None),
        col(Invitation.revoked_at).is_(None),
        col(Invitation.expires_at) > now,
    ]


async def use_invitation(
    session: AsyncSession, invitation: Invitation, user: User, now: datetime
) -> bool:
    """Mark the invitation used by ``user`` if it is still open; of two registrations racing
    with one token, the database lets exactly one do so."""
    result = await session.exec(
        update(Invitation)
        .where(col(Invitation.id) == invitation.id, *_is_open(now))
        .values(used_at=now, used_by=user.id, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _invitations_table() -> Table:
    table: Table = Invitation.__table__  # type: ignore[attr-defined]
    return table


INVITATION_COLUMNS = _invitations_table().c
INVITATIONS = Listing(
    table=_invitations_table(),
    columns=[INVITATION_COLUMNS[name] for name in InvitationPublic.model_fields],
    ordering={name: INVITATION_COLUMNS[name] for name in InvitationPublic.model_fields},
    search=[SearchField(func.lower(INVITATION_COLUMNS.email))],
    updated_at=INVITATION_COLUMNS.updated_at,
    # Open: neither used nor revoked, and not expired at the time the list is asked for.
    where=[INVITATION_COLUMNS.used_at.is_(None), INVITATION_COLUMNS.revoked_at.is_(None)],
    filters={
        "expires_after": lambda value: INVITATION_COLUMNS.expires_at > value,
        "tenant": lambda value: INVITATION_COLUMNS.tenant == value,
    },
)


async def list_invitations(
    *, session: AsyncSession, tenant: str | None, query: ListQuery
) -> PageResult:
    """The open invitations of ``tenant`` (None: of every tenant)."""
    filters: dict[str, object] = {"expires_after": utcnow()}
    if tenant is not None:
        filters["tenant"] = tenant
    return await fetch_page(session, INVITATIONS, query, filters)


async def get_open_invitation(
    *, session: AsyncSession, invitation_id: int, tenant: str | None
) -> Invitation | None:
    """The open invitation ``invitation_id`` of ``tenant`` (None: of any tenant), or None."""
    statement = select(Invitation).where(col(Invitation.id) == invitation_id, *_is_open(utcnow()))
    if tenant is not None:
        statement = statement.where(col(Invitation.tenant) == tenant)
    return (await session.exec(statement)).first()


async def revoke_invitation(*, session: AsyncSession, invitation: Invitation) -> None:
    now = utcnow()
    await session.exec(
        update(Invitation)
        .where(col(Invitation.id) == invitation.id, col(Invitation.revoked_at).is_(None))
        .values(revoked_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
