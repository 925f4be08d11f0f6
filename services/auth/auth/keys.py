"""Signing keys: the private key is a secret, the public keys are published until their
tokens have expired, and a rotation logs nobody out.

Where the private key (the *current* key) comes from, first match wins:

- ``JWT_PRIVATE_KEY``: the PEM itself (rotate: a new value, then restart auth);
- ``JWT_PRIVATE_KEY_FILE``: a file holding it, typically a mounted secret;
- ``JWT_GENERATE_KEY`` (on by default, for ``make run``; the images turn it off):
  ``<data dir>/jwt-private-key.pem``, generated at the first start with mode 0600.

Without any, start-up fails and says so. The private key is never written to the database.

What the JWKS lists comes from the ``published_key`` table (public keys only): every auth
process publishes the key it signs with and renews that publication every
``JWT_KEY_RELOAD_INTERVAL`` seconds, to last the longest token lifetime beyond; a key no process
signs with any more stays listed until the last token it signed has expired, then drops out.
So replicas with different keys (during a rollout) are all verifiable, and verifiers elsewhere
learn a new key on its first token (they refetch the JWKS on an unknown ``kid``).

Rotation: replace the key file (``rotate_signing_key``, the ``dentiapro keys rotate`` command,
writes a new key and publishes it first; or put a new key into the mounted secret). Each auth
process re-reads its file every ``JWT_KEY_RELOAD_INTERVAL`` seconds, publishes the new key at
once and signs with it ``JWKS_REFETCH_INTERVAL`` seconds later (every verifier can fetch it by
then); tokens of the previous key keep verifying until they expire. An auth process that starts
with a key the deployment has never published waits as long before it is ready.

A key the first release generated into the database (table ``signing_key``) is moved out at
the first start: into the generated key file when there is none yet (so it stays the current
key), otherwise published as a previous key; then it is deleted from the database.
"""

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from common.background import in_background
from common.db import create_async_db_engine, utcnow
from common.tokens import TokenVerifier
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from auth import crud
from auth.settings import AuthSettings
from auth.tokens import Signer, generate_private_pem

log = logging.getLogger("dentiapro.auth.keys")

GENERATED_KEY_FILE = "jwt-private-key.pem"


class NoSigningKey(RuntimeError):
    """No private key is configured, and generating one is off: start-up stops."""


class KeyRotationError(RuntimeError):
    """The key cannot be rotated from here (it comes from the environment, or its file is
    read-only): the message says what to do instead."""


def key_file(settings: AuthSettings) -> Path | None:
    """The file the current key is read from and rotated into; None when it comes from
    ``JWT_PRIVATE_KEY`` or from nowhere."""
    if settings.jwt_private_key is not None and settings.jwt_private_key.get_secret_value():
        return None
    if settings.jwt_private_key_file is not None:
        return settings.jwt_private_key_file
    if settings.jwt_generate_key:
        return settings.data_dir / GENERATED_KEY_FILE
    return None


def _published_until(settings: AuthSettings, now: datetime) -> datetime:
    """Until when a key signing now must stay listed: past the longest token it may sign,
    with one renewal interval to spare."""
    lifetime = max(settings.access_token_lifetime, settings.refresh_token_lifetime)
    return now + timedelta(seconds=lifetime + settings.jwt_key_reload_interval)


def _write_new_key_file(path: Path, pem: str) -> None:
    """Create ``path`` holding ``pem``, readable by its owner only from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(pem)
        file.flush()
        os.fsync(file.fileno())


def _replace_key_file(path: Path, pem: str) -> None:
    """Replace ``path`` atomically (a reader sees the old key or the new one, never half)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    try:
        _write_new_key_file(temporary, pem)
        os.replace(temporary, path)
    except OSError as exc:
        with suppress(OSError):
            temporary.unlink()
        raise KeyRotationError(
            f"cannot write the key file {path} ({exc.strerror}). A key mounted from a secret "
            "is rotated by putting a new key into the secret: auth reloads it within "
            "JWT_KEY_RELOAD_INTERVAL (or on the restart the change of the secret rolls)."
        ) from exc


def _current_pem(settings: AuthSettings, legacy: list[str]) -> str:
    """The private key to sign with, from the secret it lives in (see the module docstring).
    The generated key file is created from the first release's key when there is one."""
    if settings.jwt_private_key is not None and settings.jwt_private_key.get_secret_value():
        return settings.jwt_private_key.get_secret_value()
    path = key_file(settings)
    if path is None:
        raise NoSigningKey(
            "No JWT signing key: set JWT_PRIVATE_KEY (PEM) or JWT_PRIVATE_KEY_FILE (a file "
            "holding it, e.g. a mounted secret; create one with `openssl genpkey -algorithm "
            "ed25519`). JWT_GENERATE_KEY=false: auth does not generate one here."
        )
    if path.exists():
        return path.read_text(encoding="ascii")
    if settings.jwt_private_key_file is not None:
        raise NoSigningKey(f"JWT_PRIVATE_KEY_FILE names {path}, which does not exist.")
    try:
        # The first release's key stays the current key: every token it signed still verifies.
        _write_new_key_file(path, legacy[0] if legacy else generate_private_pem())
        log.info("signing key generated into %s", path)
    except FileExistsError:  # another replica on the same data directory was first
        pass
    return path.read_text(encoding="ascii")


class KeyRing:
    """The key this process signs with (``signer``) and the JWKS (``jwks``)."""

    def __init__(
        self, settings: AuthSettings, engine: AsyncEngine, signer: Signer, loaded: str
    ) -> None:
        """``loaded``: the PEM ``signer`` was made from, as read (a file changing from it is
        a rotation)."""
        self._settings = settings
        self._engine = engine
        self.signer = signer
        self._path = key_file(settings)
        self._loaded = loaded
        self.verifier = TokenVerifier(
            self._jwks_source,
            issuer=settings.jwt_issuer,
            refetch_interval=settings.jwks_refetch_interval,
        )

    @classmethod
    async def open(cls, settings: AuthSettings, engine: AsyncEngine) -> "KeyRing":
        """Load the current key (moving a first-release key out of the database), publish it,
        and load the published keys into ``verifier``."""
        async with AsyncSession(engine, expire_on_commit=False) as session:
            legacy = await crud.legacy_private_pems(session=session)
            await session.commit()  # no transaction held while the file is written
            pem = _current_pem(settings, legacy)
            signer = Signer.from_pem(pem, issuer=settings.jwt_issuer)
            now = utcnow()
            published = {jwk["kid"] for jwk in await crud.published_jwks(session=session, now=now)}
            until = _published_until(settings, now)
            await crud.publish_key(session=session, jwk=signer.jwk, expires_at=until, now=now)
            for pem in legacy:
                # It signed until now: its tokens stay valid for their whole lifetime.
                previous = Signer.from_pem(pem, issuer=settings.jwt_issuer)
                await crud.publish_key(session=session, jwk=previous.jwk, expires_at=until, now=now)
            await crud.forget_legacy_keys(session=session)
            await session.commit()
        if legacy and engine.dialect.name == "sqlite":
            # The deleted rows were overwritten with zeros in the write-ahead log: move those
            # pages into the database file now and empty the log, so no copy of either file
            # holds the key.
            async with engine.connect() as connection:
                await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        if legacy:
            log.warning(
                "moved %d signing key(s) of the first release out of the auth database", len(legacy)
            )
        ring = cls(settings, engine, signer, pem)
        if published and signer.kid not in published:
            # A key new to a running deployment (a rolled-out secret): as for a rotation
            # (``refresh``), not ready to sign with it until every verifier can fetch it.
            wait = settings.jwks_refetch_interval
            log.info("new signing key %s published; serving in %g s", signer.kid, wait)
            await asyncio.sleep(wait)
        await ring.verifier.refresh_keys()
        return ring

    def _read(self) -> str:
        return self._path.read_text(encoding="ascii") if self._path is not None else self._loaded

    async def jwks(self, session: AsyncSession) -> dict[str, Any]:
        """Every public key whose tokens may still be alive; the current one first."""
        published = await crud.published_jwks(session=session, now=utcnow())
        others = [jwk for jwk in published if jwk["kid"] != self.signer.kid]
        return {"keys": [self.signer.jwk, *others]}

    async def _jwks_source(self) -> dict[str, Any]:
        async with AsyncSession(self._engine) as session:
            return await self.jwks(session)

    async def refresh(self) -> None:
        """Take a rotated key file into use, and renew the publication of the signing key.

        A rotated key is published at once but signed with only ``JWKS_REFETCH_INTERVAL``
        seconds later: a verifier refetches the JWKS on an unknown kid at most that often, so
        one that fetched just before the publication could not learn the key from its first
        token and would refuse it until then.
        """
        signer = self.signer
        try:
            current = self._read()
        except OSError as exc:
            log.warning("signing key file unreadable, signing on with the loaded key: %s", exc)
            current = self._loaded
        if current != self._loaded:
            try:
                signer = Signer.from_pem(current, issuer=self._settings.jwt_issuer)
            except (ValueError, TypeError) as exc:  # not a PEM, not Ed25519, encrypted
                log.error("rotated signing key not usable, signing on with the old one: %s", exc)
        now = utcnow()
        until = _published_until(self._settings, now)
        async with AsyncSession(self._engine) as session:
            # The outgoing key signed until now; the incoming one is listed before its first
            # token can be presented anywhere.
            for jwk in {self.signer.jwk["kid"]: self.signer.jwk, signer.kid: signer.jwk}.values():
                await crud.publish_key(session=session, jwk=jwk, expires_at=until, now=now)
            await session.commit()
        if signer is not self.signer:
            self._loaded = current
            if signer.kid != self.signer.kid:  # not merely the same key written anew
                wait = self._settings.jwks_refetch_interval
                log.info("rotated key %s published; signing with it in %g s", signer.kid, wait)
                await asyncio.sleep(wait)
                log.info("signing with the rotated key %s (was %s)", signer.kid, self.signer.kid)
                self.signer = signer
                await self.verifier.refresh_keys()

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Lifespan helper: ``refresh`` every ``JWT_KEY_RELOAD_INTERVAL`` while the app runs."""

        async def watch() -> None:
            while True:
                await asyncio.sleep(self._settings.jwt_key_reload_interval)
                try:
                    await self.refresh()
                except Exception as exc:  # the database away: try again next time
                    log.warning("signing key publication not renewed: %s", type(exc).__name__)

        try:
            async with in_background(watch()):
                yield
        finally:
            await self.verifier.aclose()


# ---- for operators: the dentiapro CLI ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class RotatedKey:
    kid: str
    previous_kid: str | None
    key_file: Path


def rotate_signing_key(settings: AuthSettings) -> RotatedKey:
    """Generate a new signing key into the key file, without logging anyone out.

    The new public key is published first, then the file is replaced atomically (mode 0600);
    running auth processes sign with it within ``JWT_KEY_RELOAD_INTERVAL`` +
    ``JWKS_REFETCH_INTERVAL`` seconds, and the previous key stays in the JWKS until the last
    token it signed has expired. Needs the auth database migrated; the services may be down.
    ``KeyRotationError`` when the key comes from ``JWT_PRIVATE_KEY`` or its file cannot be
    written (a mounted secret: rotate the secret).
    """
    path = key_file(settings)
    if path is None:
        raise KeyRotationError(
            "the signing key comes from JWT_PRIVATE_KEY: rotate it by setting a new key there "
            "and restarting auth (tokens of the previous key keep verifying until they expire)"
        )
    previous = (
        Signer.from_pem(path.read_text(encoding="ascii"), issuer=settings.jwt_issuer)
        if path.exists()
        else None
    )
    pem = generate_private_pem()
    new = Signer.from_pem(pem, issuer=settings.jwt_issuer)
    asyncio.run(_publish(settings, [key for key in (new, previous) if key is not None]))
    if path.exists():
        _replace_key_file(path, pem)
    else:
        _write_new_key_file(path, pem)
    return RotatedKey(kid=new.kid, previous_kid=previous.kid if previous else None, key_file=path)


async def _publish(settings: AuthSettings, signers: list[Signer]) -> None:
    engine = create_async_db_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        async with AsyncSession(engine) as session:
            now = utcnow()
            until = _published_until(settings, now)
            for signer in signers:
                await crud.publish_key(session=session, jwk=signer.jwk, expires_at=until, now=now)
            await session.commit()
    finally:
        await engine.dispose()
