"""Accounts: registration, authentication, the users list, administration, the superuser."""

from dataclasses import dataclass

from common.db import utcnow
from common.errors import ValidationFailed
from common.listing import Listing, ListQuery, PageResult, SearchField, fetch_page
from sqlalchemy import Table, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from auth.crud.invitations import INVITATION_USED, use_invitation
from auth.models import (
    Invitation,
    Role,
    User,
    UserDetail,
    UserRegister,
    UserUpdate,
    normalize_username,
    username_key,
)
from auth.passwords import PasswordHasher

USERNAME_TAKEN = "A user with that username already exists."


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
    if invitation is not None and not await use_invitation(session, invitation, user, now):
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


# ---- the users list (common.listing's pipeline) ----------------------------------------


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
    # As DRF's SearchFilter: every term in username or email; usernames are stored NFKC
    # case-folded (username_key), so a term is folded the same way.
    search=[
        SearchField(USER_COLUMNS.username_key, prepare=username_key),
        SearchField(func.lower(USER_COLUMNS.email)),
    ],
    updated_at=USER_COLUMNS.updated_at,
    filters={
        "tenant": lambda value: USER_COLUMNS.tenant == value,
        "is_superuser": lambda value: USER_COLUMNS.is_superuser == value,
    },
)


@dataclass(frozen=True, slots=True)
class UserScope:
    """Whose users a caller sees: one tenant's (``tenant``) or every tenant's (None)."""

    tenant: str | None
    include_superusers: bool


async def list_users(*, session: AsyncSession, scope: UserScope, query: ListQuery) -> PageResult:
    """A page of the users in ``scope`` matching the list parameters."""
    filters: dict[str, object] = {}
    if scope.tenant is not None:
        filters["tenant"] = scope.tenant
    if not scope.include_superusers:
        filters["is_superuser"] = False
    return await fetch_page(session, USERS, query, filters)


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
