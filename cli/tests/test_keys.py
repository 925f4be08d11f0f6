"""``dentiapro keys rotate``: a new signing key that a running auth takes into use, logging
nobody out; refused, with nothing changed, where it cannot be done from here."""

import os
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

import httpx
import jwt
import pytest
from common.testing import TestSigner

KEY_FILE = "jwt-private-key.pem"  # auth's generated key, in the data directory
SUPERUSER = {"username": "platform-root", "password": "root-test-password-1"}  # conftest's


class Installation(Protocol):
    """conftest.Installation, as these tests use it."""

    backend: str
    data_dir: Path

    def dentiapro(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]: ...
    def migrate_auth(self) -> None: ...


class Services(Protocol):
    """conftest.Services: clients on the real auth and tenants services."""

    auth: httpx.Client
    tenants: httpx.Client


RunServices = Callable[..., AbstractContextManager[Services]]


def kid(token: str) -> str:
    value: str = jwt.get_unverified_header(token)["kid"]
    return value


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def published(auth: httpx.Client) -> set[str]:
    return {key["kid"] for key in auth.get("/api/auth/jwks/").json()["keys"]}


def login(auth: httpx.Client) -> dict[str, str]:
    response = auth.post("/api/auth/login/", json=SUPERUSER)
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


def test_after_a_rotation_tokens_minted_before_still_verify_and_new_ones_use_the_new_key(
    installation: Installation, services: RunServices
) -> None:
    with services() as running:
        before = login(running.auth)
        old_kid = kid(before["access"])

        done = installation.dentiapro("keys", "rotate", env={"JWT_KEY_RELOAD_INTERVAL": "0.2"})

        assert done.returncode == 0, done.stdout + done.stderr
        rotated, explained = done.stdout.splitlines()
        new_kid = rotated.split()[3]
        key_file = installation.data_dir / KEY_FILE
        assert rotated == f"signing key rotated: {new_kid} replaces {old_kid} in {key_file}"
        # JWT_KEY_RELOAD_INTERVAL to see it, JWKS_REFETCH_INTERVAL (1 s) before signing with it.
        assert explained.startswith("Running auth processes sign with the new key within 1.2 s")
        assert "Nobody is logged out" in explained
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        # Published before the file changed: no verifier meets the new kid before the JWKS.
        assert published(running.auth) == {old_kid, new_kid}

        deadline = time.monotonic() + 10
        while kid((after := login(running.auth))["access"]) != new_kid:
            assert time.monotonic() < deadline, "auth never signed with the rotated key"
            time.sleep(0.1)
        # Nobody is logged out: the old tokens keep working, at auth and at another service
        # verifying them from the JWKS; the new ones work there too.
        assert (
            running.auth.get("/api/auth/me/", headers=bearer(before["access"])).status_code == 200
        )
        for token in (before["access"], after["access"]):
            tenants = running.tenants.get("/api/tenants/", headers=bearer(token))
            assert tenants.status_code == 200, tenants.text
        refreshed = running.auth.post("/api/auth/refresh/", json={"refresh": before["refresh"]})
        assert refreshed.status_code == 200, refreshed.text
        assert kid(refreshed.json()["access"]) == new_kid
        assert published(running.auth) == {old_kid, new_kid}


def test_a_verifier_that_fetched_the_keys_just_before_a_rotation_takes_the_first_new_token(
    installation: Installation, services: RunServices
) -> None:
    # A verifier refetches the JWKS on an unknown kid at most every JWKS_REFETCH_INTERVAL: one
    # that has just fetched it must not meet the rotated key's first token before it may fetch
    # again, so auth signs with a rotated key only that long after publishing it.
    interval = 3.0
    with services(jwks_refetch_interval=interval) as running:
        login(running.auth)
        # tenants fetches the JWKS now: a token naming a key it does not hold.
        unknown = jwt.encode({"sub": "1"}, "x" * 32, algorithm="HS256", headers={"kid": "none"})
        assert running.tenants.get("/api/tenants/", headers=bearer(unknown)).status_code == 401

        env = {"JWT_KEY_RELOAD_INTERVAL": "0.2", "JWKS_REFETCH_INTERVAL": str(interval)}
        done = installation.dentiapro("keys", "rotate", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        new_kid = done.stdout.split()[3]
        deadline = time.monotonic() + 15
        while kid((first := login(running.auth))["access"]) != new_kid:
            assert time.monotonic() < deadline, "auth never signed with the rotated key"
            time.sleep(0.05)
        tenants = running.tenants.get("/api/tenants/", headers=bearer(first["access"]))
        assert tenants.status_code == 200, tenants.text


@contextmanager
def read_only_directory(path: Path) -> Iterator[None]:
    """``path`` where no file can be created, root included (as a mounted secret is): its
    mode for a user, the immutable attribute for root (where the file system has it)."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("root, and no immutable attribute here: cannot make a read-only directory")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_what_cannot_be_rotated_from_here_is_refused_and_nothing_changes(
    installation: Installation,
) -> None:
    def refused(message: str, env: dict[str, str] | None = None) -> None:
        done = installation.dentiapro("keys", "rotate", env=env)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stdout == ""
        assert message in done.stderr, done.stderr

    key_file = installation.data_dir / KEY_FILE
    # No key file yet: a key written where auth does not read it (a container's temporary
    # directory) would rotate nothing.
    refused(f"error: the signing key was not rotated: there is no key file at {key_file}")
    assert not installation.data_dir.exists()

    installation.data_dir.mkdir()
    key = TestSigner().private_pem
    key_file.write_bytes(key)
    key_file.chmod(0o600)
    refused("is not migrated: run `dentiapro migrate`")
    if installation.backend == "sqlite":
        assert not (installation.data_dir / "auth.sqlite3").exists()

    installation.migrate_auth()
    refused(
        "error: the signing key was not rotated: the signing key comes from JWT_PRIVATE_KEY",
        env={"JWT_PRIVATE_KEY": TestSigner().private_pem.decode()},
    )
    # A public key, made here (no key is committed): a PEM, but nothing to sign with.
    not_a_key = installation.data_dir / "not-a-key.pem"
    not_a_key.write_bytes(TestSigner().public_key_encodings["pem"])
    refused(
        f"error: the key file {not_a_key} holds no usable signing key",
        env={"JWT_PRIVATE_KEY_FILE": str(not_a_key)},
    )
    mounted = installation.data_dir / "secret" / "private-key.pem"  # as a mounted secret
    mounted.parent.mkdir()
    mounted.write_bytes(key)
    with read_only_directory(mounted.parent):
        refused(
            f"error: the signing key was not rotated: cannot write the key file {mounted}",
            env={"JWT_PRIVATE_KEY_FILE": str(mounted)},
        )
    assert mounted.read_bytes() == key
    assert key_file.read_bytes() == key

    done = installation.dentiapro("keys", "rotate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert key_file.read_bytes() != key
