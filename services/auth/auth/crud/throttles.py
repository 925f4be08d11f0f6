"""Throttles: failed logins per username and client address, registrations per client
address. Rows in the database, so every replica counts the same."""

import math
from datetime import datetime, timedelta

from common.db import utcnow
from common.errors import Throttled
from sqlalchemy import delete
from sqlalchemy.orm import Mapped
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from auth.models import LoginFailure, RegistrationAttempt, username_key
from auth.settings import AuthSettings

# ---- login failures -------------------------------------------------------------------------
#
# An attempt is recorded as a failure *before* the password is checked, and forgotten if it
# succeeds. Checking first and recording after the (slow) hash let a burst of parallel
# attempts all pass the check before any failure was saved; now the k-th attempt to be
# recorded counts at least k rows, so at most the limit get as far as the password check.


async def _retry_after(
    session: AsyncSession,
    at: Mapped[datetime],
    key: Mapped[str],
    value: str,
    skip: int,
    window: int,
    now: datetime,
) -> int:
    """Seconds until the newest ``skip`` rows whose ``key`` is ``value`` leave the window of
    ``window`` seconds (their time in column ``at``); 0 when there are fewer."""
    # The (skip + 1)-th newest row is the one whose expiry lets the next attempt through.
    statement = (
        select(at)
        .where(key == value, col(at) > now - timedelta(seconds=window))
        .order_by(col(at).desc())
        .offset(skip)
        .limit(1)
    )
    newest = (await session.exec(statement)).first()
    if newest is None:
        return 0
    remaining = (newest + timedelta(seconds=window) - now).total_seconds()
    return max(1, math.ceil(remaining))


async def _throttle(
    session: AsyncSession, key: str, address: str, settings: AuthSettings, now: datetime, own: int
) -> None:
    """Throttled when the failures of the window (plus ``own`` rows of this attempt) are past
    the per-username or per-address limit."""
    window = settings.login_failure_window
    at = col(LoginFailure.failed_at)
    retry_after = max(
        await _retry_after(
            session,
            at,
            col(LoginFailure.username_key),
            key,
            settings.login_failures_per_username - 1 + own,
            window,
            now,
        ),
        await _retry_after(
            session,
            at,
            col(LoginFailure.address),
            address,
            settings.login_failures_per_address - 1 + own,
            window,
            now,
        ),
    )
    if retry_after:
        raise Throttled(retry_after)


async def start_login_attempt(
    *, session: AsyncSession, username: str, address: str, settings: AuthSettings
) -> int:
    """Record the attempt (a failure until ``forget_login_attempt``); its id. ``Throttled``
    when a limit is reached, with nothing recorded: a refused attempt is no failure."""
    now = utcnow()
    key, address = username_key(username)[:150], address[:64]
    # Already over a limit: refused after one read, so a flood of refused attempts writes
    # nothing (SQLite has one writer for every login, refresh and registration).
    await _throttle(session, key, address, settings, now, own=0)
    # Failures older than the window count for nothing; pruning here keeps the table small.
    await session.exec(
        delete(LoginFailure)
        .where(col(LoginFailure.failed_at) < now - timedelta(seconds=settings.login_failure_window))
        .execution_options(synchronize_session=False)
    )
    attempt = LoginFailure(username_key=key, address=address, failed_at=now)
    session.add(attempt)
    await session.commit()  # visible to every other attempt before this one is judged
    assert attempt.id is not None
    try:
        await _throttle(session, key, address, settings, now, own=1)  # with those in flight
    except Throttled:
        await forget_login_attempt(session=session, attempt_id=attempt.id)
        raise
    return attempt.id


async def forget_login_attempt(
    *, session: AsyncSession, attempt_id: int, commit: bool = True
) -> None:
    """The attempt succeeded, or was not judged: it is no failure. ``commit=False`` leaves the
    delete to the caller's next commit (a login's, with its new refresh token)."""
    await session.exec(
        delete(LoginFailure)
        .where(col(LoginFailure.id) == attempt_id)
        .execution_options(synchronize_session=False)
    )
    if commit:
        await session.commit()


# ---- registrations --------------------------------------------------------------------------
#
# Every registration that passed validation costs an Argon2 hash: at most
# REGISTRATIONS_PER_ADDRESS per client address within REGISTRATION_WINDOW, recorded before the
# hash as login attempts are, so a parallel burst cannot slip past the count.


async def _registration_retry_after(
    session: AsyncSession, address: str, settings: AuthSettings, now: datetime, own: int
) -> int:
    return await _retry_after(
        session,
        col(RegistrationAttempt.attempted_at),
        col(RegistrationAttempt.address),
        address,
        settings.registrations_per_address - 1 + own,
        settings.registration_window,
        now,
    )


async def record_registration_attempt(
    *, session: AsyncSession, address: str, settings: AuthSettings
) -> None:
    """Count a registration from ``address`` (a throttle key); ``Throttled`` when the address
    has had its share of the window, with nothing recorded."""
    now = utcnow()
    address = address[:64]
    retry_after = await _registration_retry_after(session, address, settings, now, own=0)
    if retry_after:
        raise Throttled(retry_after)
    window_start = now - timedelta(seconds=settings.registration_window)
    await session.exec(
        delete(RegistrationAttempt)
        .where(col(RegistrationAttempt.attempted_at) < window_start)
        .execution_options(synchronize_session=False)
    )
    attempt = RegistrationAttempt(address=address, attempted_at=now)
    session.add(attempt)
    await session.commit()  # visible to every other registration before this one goes on
    retry_after = await _registration_retry_after(session, address, settings, now, own=1)
    if retry_after:  # others of a burst were recorded first: this one does not count
        await session.exec(
            delete(RegistrationAttempt)
            .where(col(RegistrationAttempt.id) == attempt.id)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
        raise Throttled(retry_after)
