"""Plain functions over the auth tables; they raise domain errors, never HTTP exceptions."""

import hashlib
import json
import math
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from common.db import utcnow
from common.errors import Throttled, TokenInvalid, ValidationFailed
from common.listing import Listing, ListQuery, PageResult, fetch_page
from sqlalchemy import ColumnElement, Table, delete, func, or_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from auth.models import (
    Invitation,
    InvitationPublic,
    LegacySigningKey,
    LoginFailure,
    PublishedKey,
    RefreshToken,
    RegistrationAttempt,
    Role,
    TokenPair,
    User,
    UserDetail,
    UserRegister,
    UserUpdate,
    normalize_username,
    username_key,
)
from auth.passwords import PasswordHasher
from auth.settings import AuthSettings
from auth.tokens import Signer

USERNAME_TAKEN = "A user with that username already exists."
TOKEN_INVALID = "Token is invalid or expired"
TOKEN_REVOKED = "Token is blacklisted"
# Advisory-lock space of refresh families (the key within it: the family id's hash).
REFRESH_FAMILY_LOCKS = 0x72667368  # "rfsh"

# ---- users --------------------------------------------------------------------------------


async def get_user(*, session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_username(*, session: AsyncSession, username: str) -> User | None:
    statement = select(User).where(User.username_key == username_key(username))
    return (await session.exec(statement)).first()


async def _release_connection(session: AsyncSession) -> None:
    """End the session's (read) transaction, giving its connection back to the pool: a hash
    may wait for the Argon2 pool, and a burst of logins or registrations must not hold every
    database connection meanwhile (nor keep PostgreSQL transactions idle). Loaded objects stay
    as they are (sessions do not expire them on commit)."""
    await session.commit()


async def create_user(
    *,
    session: AsyncSession,
    data: UserRegister,
    tenant: str,
    hasher: PasswordHasher,
    invitation: Invitation | None = None,
) -> User:
    """Register a user: with an ``invitation`` (checked by ``get_invitation``), active with the
    invited role in the invited tenant, the invitation used up in the same transaction;
    without one, a pending staff account in ``tenant``. Registration never makes an admin by
    itself. A race on the username, or on the invitation, is settled by the database."""
    if await get_user_by_username(session=session, username=data.username) is not None:
        raise ValidationFailed({"username": USERNAME_TAKEN})
    await _release_connection(session)
    password_hash = await hasher.hash_for_registration(data.password)
    now = utcnow()
    user = User(
        username=data.username,
        username_key=username_key(data.username),
        email=data.email,
        tenant=invitation.tenant if invitation else tenant,
        role=invitation.role if invitation else Role.STAFF,
        is_active=invitation is not None,
        password_hash=password_hash,
        date_joined=now,
        updated_at=now,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise ValidationFailed({"username": USERNAME_TAKEN}) from None
    if invitation is not None and not await _use_invitation(session, invitation, user, now):
        await session.rollback()  # the user goes with it
        raise ValidationFailed({"invitation": INVITATION_USED})
    await session.commit()
    return user


async def authenticate(
    *, session: AsyncSession, username: str, password: str, hasher: PasswordHasher
) -> User | None:
    """The user these credentials belong to, active or not; ``None`` when they are wrong."""
    user = await get_user_by_username(session=session, username=username)
    await _release_connection(session)
    if user is None:
        # Same Argon2 work as for a real user, so response time does not reveal who exists.
        await hasher.verify_dummy(password)
        return None
    if not await hasher.verify(user.password_hash, password):
        return None
    if hasher.needs_rehash(user.password_hash):
        user.password_hash = await hasher.hash(password)
        session.add(user)
        await session.commit()
    return user


# ---- invitations --------------------------------------------------------------------------

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


async def _use_invitation(
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


def _search_invitations(terms: Sequence[str]) -> list[ColumnElement[bool]]:
    return [
        func.lower(col(Invitation.email)).contains(term.lower(), autoescape=True) for term in terms
    ]


INVITATION_COLUMNS = _invitations_table().c
INVITATIONS = Listing(
    table=_invitations_table(),
    columns=[INVITATION_COLUMNS[name] for name in InvitationPublic.model_fields],
    ordering={name: INVITATION_COLUMNS[name] for name in InvitationPublic.model_fields},
    search=_search_invitations,
    updated_at=INVITATION_COLUMNS.updated_at,
)


async def list_invitations(
    *, session: AsyncSession, tenant: str | None, query: ListQuery
) -> PageResult:
    """The open invitations of ``tenant`` (None: of every tenant)."""
    where = _is_open(utcnow())
    if tenant is not None:
        where.append(col(Invitation.tenant) == tenant)
    return await fetch_page(await session.connection(), INVITATIONS, query, where)


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


# ---- the users list (common.listing's pipeline) ----------------------------------------


def _search_users(terms: Sequence[str]) -> list[ColumnElement[bool]]:
    # As DRF's SearchFilter: every term (split on spaces and commas) in username or email.
    return [
        or_(
            # Normalised as stored usernames are (NFKC, case-folded).
            col(User.username_key).contains(username_key(term), autoescape=True),
            func.lower(col(User.email)).contains(term.lower(), autoescape=True),
        )
        for term in terms
    ]


def _users_table() -> Table:
    table: Table = User.__table__  # type: ignore[attr-defined]
    return table


USER_COLUMNS = _users_table().c
USERS = Listing(
    table=_users_table(),
    # What a page selects: the fields of UserDetail, each a column of the same name.
    columns=[USER_COLUMNS[name] for name in UserDetail.model_fields],
    # Every listed field is orderable; usernames sort as they compare (case-insensitively).
    ordering={
        **{name: USER_COLUMNS[name] for name in UserDetail.model_fields},
        "username": USER_COLUMNS.username_key,
    },
    search=_search_users,
    updated_at=USER_COLUMNS.updated_at,
)


@dataclass(frozen=True, slots=True)
class UserScope:
    """Whose users a caller sees: one tenant's (``tenant``) or every tenant's (None)."""

    tenant: str | None
    include_superusers: bool


async def list_users(*, session: AsyncSession, scope: UserScope, query: ListQuery) -> PageResult:
    """A page of the users in ``scope`` matching the list parameters."""
    where: list[ColumnElement[bool]] = []
    if scope.tenant is not None:
        where.append(col(User.tenant) == scope.tenant)
    if not scope.include_superusers:
        where.append(col(User.is_superuser).is_(False))
    return await fetch_page(await session.connection(), USERS, query, where)


async def update_user(*, session: AsyncSession, user: User, data: UserUpdate, actor: User) -> User:
    changes = data.model_dump(exclude_unset=True)
    if user.id == actor.id:
        errors: dict[str, str] = {}
        if changes.get("is_active") is False:
            errors["is_active"] = "You cannot deactivate your own account."
        if changes.get("role") == Role.STAFF and user.role == Role.ADMIN:
            errors["role"] = "You cannot remove your own admin role."
        if errors:
            raise ValidationFailed(errors)
    if not changes:
        return user
    for field, value in changes.items():
        setattr(user, field, value)
    user.updated_at = utcnow()
    session.add(user)
    await session.commit()
    return user


class SuperuserNameTaken(RuntimeError):
    """``DENTIAPRO_ADMIN_USERNAME`` names an account that is not a superuser: start-up stops."""

    def __init__(self, user: User) -> None:
        super().__init__(
            f'DENTIAPRO_ADMIN_USERNAME "{user.username}" names an existing account that is not '
            f'a superuser (tenant "{user.tenant}", id {user.id}): it is never promoted. Choose '
            "another DENTIAPRO_ADMIN_USERNAME, or rename or delete that account first."
        )


async def ensure_superuser(
    *, session: AsyncSession, username: str, password: str, tenant: str, hasher: PasswordHasher
) -> User:
    """Create the platform superuser, or update the password of the existing superuser.

    An existing account of that name that is not a superuser is never promoted (whoever
    registered the name first would get a superuser at its next refresh):
    ``SuperuserNameTaken``.
    """
    username = normalize_username(username)
    for _ in range(2):
        user = await get_user_by_username(session=session, username=username)
        now = utcnow()
        if user is not None and not user.is_superuser:
            raise SuperuserNameTaken(user)
        if user is None:
            user = User(
                username=username,
                username_key=username_key(username),
                email="",
                tenant=tenant,
                password_hash=await hasher.hash(password),
                date_joined=now,
            )
        elif not await hasher.verify(user.password_hash, password):
            user.password_hash = await hasher.hash(password)
        user.is_superuser = True
        user.is_active = True
        user.role = Role.ADMIN
        user.tenant = tenant
        user.updated_at = now
        session.add(user)
        try:
            await session.commit()
        except IntegrityError:  # another replica created it at the same moment
            await session.rollback()
            continue
        return user
    raise RuntimeError("could not ensure the superuser")


# ---- login throttling ---------------------------------------------------------------------
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


# ---- registration throttling --------------------------------------------------------------
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


# ---- tokens -------------------------------------------------------------------------------


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


# ---- signing keys: the public ones ---------------------------------------------------------


async def publish_key(
    *, session: AsyncSession, jwk: dict[str, str], expires_at: datetime, now: datetime
) -> None:
    """List ``jwk`` in the JWKS until at least ``expires_at`` (an earlier expiry is pushed out,
    never a later one pulled in); the caller commits. Replicas may publish the same key at
    once: an upsert."""
    table = _published_keys_table()
    dialect = (await session.connection()).dialect.name
    insert_into = postgresql_insert(table) if dialect == "postgresql" else sqlite_insert(table)
    statement = insert_into.values(
        kid=jwk["kid"], jwk=json.dumps(jwk), created_at=now, expires_at=expires_at
    )
    await session.exec(
        statement.on_conflict_do_update(
            index_elements=[table.c.kid],
            set_={"expires_at": statement.excluded.expires_at},
            where=table.c.expires_at < statement.excluded.expires_at,
        )
    )


def _published_keys_table() -> Table:
    table: Table = PublishedKey.__table__  # type: ignore[attr-defined]
    return table


async def published_jwks(*, session: AsyncSession, now: datetime) -> list[dict[str, str]]:
    """The JWKs whose tokens may still be alive, newest first."""
    statement = (
        select(PublishedKey.jwk)
        .where(col(PublishedKey.expires_at) > now)
        .order_by(col(PublishedKey.created_at).desc())
    )
    return [json.loads(jwk) for jwk in (await session.exec(statement)).all()]


async def legacy_private_pems(*, session: AsyncSession) -> list[str]:
    """Private keys the first release generated into the database (``LegacySigningKey``)."""
    statement = select(LegacySigningKey.private_pem).order_by(col(LegacySigningKey.id))
    return list((await session.exec(statement)).all())


async def forget_legacy_keys(*, session: AsyncSession) -> None:
    """Delete the first release's private keys (the caller commits, once they are safe)."""
    connection = await session.connection()
    if connection.dialect.name == "sqlite":
        # Overwrite the deleted rows with zeros: a copy of the database file must not hold them.
        await connection.exec_driver_sql("PRAGMA secure_delete = ON")
    await session.exec(delete(LegacySigningKey).execution_options(synchronize_session=False))
