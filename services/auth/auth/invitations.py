"""Invitations for operators: how the ``dentiapro`` CLI onboards a practice's first admin
without a superuser token (DESIGN section 3: the superuser creates the tenant, then invites).

``invite`` writes straight to the auth database (migrated: ``make migrate``, or auth started
once) and returns the invitation with its token, shown this once. It does not ask the tenants
registry whether ``tenant`` exists (the CLI may run while the services are down): a
registration with the token is refused if the tenant is unknown or deleted by then.
"""

import asyncio

from common.db import create_async_db_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from auth import crud
from auth.models import InvitationCreate, InvitationCreated
from auth.settings import AuthSettings


def invite(settings: AuthSettings, *, email: str, role: str, tenant: str) -> InvitationCreated:
    """An invitation of ``email`` into ``tenant`` (a schema_name) with ``role`` (``admin`` or
    ``staff``), usable for ``INVITATION_LIFETIME`` seconds.

    Raises ``pydantic.ValidationError`` (a ``ValueError``) for a bad email, role or
    schema_name; its ``errors()`` name the field as the API's 400 would.
    """
    data = InvitationCreate.model_validate({"email": email, "role": role, "tenant": tenant})
    return asyncio.run(_invite(settings, data, data.tenant or settings.default_tenant))


async def _invite(settings: AuthSettings, data: InvitationCreate, tenant: str) -> InvitationCreated:
    engine = create_async_db_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            invitation, token = await crud.create_invitation(
                session=session,
                email=data.email,
                role=data.role,
                tenant=tenant,
                lifetime=settings.invitation_lifetime,
            )
        return InvitationCreated.model_validate({**invitation.model_dump(), "token": token})
    finally:
        await engine.dispose()
