"""Signing keys in the database: the public keys the JWKS lists (never a private one), and
the private keys the first release left there, to be moved out (``auth.keys``)."""

import json
from datetime import datetime

from sqlalchemy import Table, delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from auth.models import LegacySigningKey, PublishedKey


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
