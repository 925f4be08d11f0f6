"""Refresh tokens: issued in families (one per login), rotated, revoked by family."""

import uuid
from datetime import datetime

from common.db import utcnow
from common.errors import TokenInvalid
from sqlalchemy import delete, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from auth.models import RefreshToken, TokenPair, User
from auth.settings import AuthSettings
from auth.tokens import Signer

TOKEN_INVALID = "Token is invalid or expired"
TOKEN_REVOKED = "Token is blacklisted"
# Advisory-lock space of refresh families (the key within it: the family id's hash).
REFRESH_FAMILY_LOCKS = 0x72667368  # "rfsh"


def _record_refresh_token(
    session: AsyncSession,
    signer: Signer,
    user: User,
    settings: AuthSettings,
    family_id: str,
    now: datetime,
) -> TokenPair:
    """A new access and refresh token; the refresh token added to the session (in
    ``family_id``), to be committed by the caller."""
    assert user.id is not None
    access, _ = signer.mint(user, token_type="access", lifetime=settings.access_token_lifetime)
    refresh, claims = signer.mint(
        user, token_type="refresh", lifetime=settings.refresh_token_lifetime
    )
    session.add(
        RefreshToken(
            jti=claims["jti"],
            family_id=family_id,
            user_id=user.id,
            created_at=now,
            expires_at=datetime.fromtimestamp(claims["exp"], tz=now.tzinfo),
        )
    )
    return TokenPair(access=access, refresh=refresh)


async def issue_token_pair(
    *, session: AsyncSession, signer: Signer, user: User, settings: AuthSettings
) -> TokenPair:
    """An access token and a refresh token in a new family (a login)."""
    now = utcnow()
    # Expired refresh tokens prove nothing any more (their signature has expired too).
    await session.exec(
        delete(RefreshToken)
        .where(col(RefreshToken.expires_at) < now)
        .execution_options(synchronize_session=False)
    )
    pair = _record_refresh_token(session, signer, user, settings, uuid.uuid4().hex, now)
    await session.commit()
    return pair


async def _lock_family(session: AsyncSession, family_id: str) -> None:
    """Serialise the rotations and revocations of one family (for the rest of the
    transaction). PostgreSQL: a transaction-level advisory lock on the family (no row to lock,
    and so no schema change). SQLite: its one writer at a time already does."""
    if (await session.connection()).dialect.name == "postgresql":
        lock = func.pg_advisory_xact_lock(REFRESH_FAMILY_LOCKS, func.hashtext(family_id))
        await session.exec(select(lock))


async def revoke_refresh_family(*, session: AsyncSession, family_id: str) -> None:
    """Revoke every refresh token of the family, including one that a concurrent rotation is
    recording at this moment: the revocation waits for it (``_lock_family``), then its UPDATE
    sees it."""
    await _lock_family(session, family_id)
    await session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    await session.commit()


async def get_refresh_token(*, session: AsyncSession, jti: str) -> RefreshToken:
    """The recorded refresh token ``jti``, not yet used.

    A token already used or revoked means a second use (stolen, or replayed): its whole family
    is revoked and the caller gets 401.
    """
    token = await session.get(RefreshToken, jti)
    if token is None:
        raise TokenInvalid(TOKEN_INVALID)
    if token.revoked_at is not None:
        await revoke_refresh_family(session=session, family_id=token.family_id)
        raise TokenInvalid(TOKEN_REVOKED)
    return token


async def rotate_refresh_token(
    *,
    session: AsyncSession,
    token: RefreshToken,
    signer: Signer,
    user: User,
    settings: AuthSettings,
) -> TokenPair:
    """Use ``token`` up and issue the next pair of its family, in one transaction.

    Of two concurrent uses of one token exactly one succeeds (a conditional UPDATE); the loser
    is a second use, which revokes the family. A revocation of the family concurrent with the
    rotation either comes first (the UPDATE then finds the token revoked) or waits for it and
    revokes the new token too: the family is locked, and nothing is committed in between.
    """
    family_id = token.family_id  # a rollback expires the loaded objects
    await _lock_family(session, family_id)
    now = utcnow()
    used = await session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.jti) == token.jti, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    if used.rowcount != 1:
        await session.rollback()
        await revoke_refresh_family(session=session, family_id=family_id)
        raise TokenInvalid(TOKEN_REVOKED)
    pair = _record_refresh_token(session, signer, user, settings, family_id, now)
    await session.commit()
    return pair
