"""Signing keys: from a secret, never the database; published while their tokens live;
rotated without logging anyone out; a first-release key moved out of the database."""

import asyncio
import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import auth.db
import httpx
import jwt
import pytest
from alembic import command
from auth.db import create_engine, migrate
from auth.keys import GENERATED_KEY_FILE, KeyRotationError, rotate_signing_key
from auth.models import User
from auth.settings import AuthSettings
from common.db import alembic_config, migrations_dir
from common.testing import TestSigner, free_port
from common.tokens import TokenVerifier, http_jwks_source
from sqlalchemy import inspect, text

StartAuth = Callable[..., httpx.Client]
MakeUser = Callable[..., User]
Login = Callable[..., dict[str, str]]
FAST_RELOAD = 0.2


def _thumbprint(jwk: dict[str, str]) -> str:
    members = {name: jwk[name] for name in ("crv", "kty", "x")}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def _kids(client: httpx.Client) -> list[str]:
    return [key["kid"] for key in client.get("/api/auth/jwks/").json()["keys"]]


def _kid(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


def _kid_of(signer: TestSigner) -> str:
    return _thumbprint(signer.jwks["keys"][0])


def _me(client: httpx.Client, access: str) -> httpx.Response:
    return client.get("/api/auth/me/", headers={"Authorization": f"Bearer {access}"})


def _eventually(condition: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def _start_fails(environment: dict[str, str]) -> str:
    """Start auth as a process with ``environment``; its output, once it has exited (failed)."""
    command = [sys.executable, "-m", "uvicorn", "auth.main:create_app", "--factory"]
    started = subprocess.run(
        [*command, "--port", str(free_port())],
        env={**os.environ, "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST": "1024", **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode != 0
    return started.stderr


# ---- the JWKS -----------------------------------------------------------------------------


def test_jwks_serves_only_public_ed25519_keys(client: httpx.Client) -> None:
    response = client.get("/api/auth/jwks/")

    assert response.status_code == 200
    (key,) = response.json()["keys"]
    assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}  # no "d": nothing private
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert key["kid"] == _thumbprint(key)
    # Verifiers cache keys themselves; no HTTP cache may hold back a rotated key.
    assert response.headers["Cache-Control"] == "no-store"


def test_tokens_verify_with_the_shared_verifier_reading_the_jwks_over_http(
    client: httpx.Client, make_user: MakeUser, login: Login
) -> None:
    make_user("ola")
    access = login(client, "ola")["access"]

    async def verify() -> dict[str, object]:
        source = http_jwks_source(str(client.base_url.join("/api/auth/jwks/")))
        verifier = TokenVerifier(source, issuer="dentiapro-auth")
        try:
            return await verifier.verify_async(access)  # fetches the JWKS: an unknown kid
        finally:
            await verifier.aclose()

    assert asyncio.run(verify())["username"] == "ola"


def test_a_replica_started_with_a_new_key_serves_once_a_verifier_that_just_fetched_can_refetch(
    start_auth: StartAuth, make_user: MakeUser, login: Login
) -> None:
    """A rolled-out secret: a new auth replica starts with a key the deployment has never
    published. A verifier that fetched the JWKS just before (it refetches on an unknown kid at
    most every JWKS_REFETCH_INTERVAL) must still take that replica's first token."""
    interval = 3.0
    first, second = TestSigner(), TestSigner()
    running = start_auth(jwt_private_key=first.private_pem.decode(), jwks_refetch_interval=interval)
    make_user("ivo")

    async def scenario() -> dict[str, object]:
        source = http_jwks_source(str(running.base_url.join("/api/auth/jwks/")))
        verifier = TokenVerifier(source, issuer="dentiapro-auth", refetch_interval=interval)
        try:
            assert await verifier.refresh_keys()  # fetched just before the new replica
            replica = await asyncio.to_thread(
                start_auth,
                jwt_private_key=second.private_pem.decode(),
                jwks_refetch_interval=interval,
            )
            access = (await asyncio.to_thread(login, replica, "ivo"))["access"]
            assert _kid(access) == _kid_of(second)
            return await verifier.verify_async(access)
        finally:
            await verifier.aclose()

    assert asyncio.run(scenario())["username"] == "ivo"


# ---- where the private key comes from -----------------------------------------------------


def test_make_run_keeps_its_generated_key_in_the_data_dir_with_mode_0600(
    start_auth: StartAuth, tmp_path: Path, make_user: MakeUser, login: Login
) -> None:
    first = start_auth()
    key_file = tmp_path / GENERATED_KEY_FILE
    make_user("pam")
    access = login(first, "pam")["access"]

    second = start_auth()  # a restart on the same data directory

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in key_file.read_text()
    assert _kids(second)[0] == _kids(first)[0] == _kid(access)
    assert _me(second, access).status_code == 200


def test_signing_key_is_read_from_the_file_jwt_private_key_file_names(
    start_auth: StartAuth, tmp_path: Path, make_user: MakeUser, login: Login
) -> None:
    signer = TestSigner()
    key_file = tmp_path / "jwt.pem"
    key_file.write_bytes(signer.private_pem)
    client = start_auth(jwt_private_key_file=key_file, jwt_generate_key=False)
    make_user("quinn")

    access = login(client, "quinn")["access"]

    assert client.get("/api/auth/jwks/").json()["keys"][0]["x"] == signer.jwks["keys"][0]["x"]
    public_key = signer.private_key.public_key()
    assert jwt.decode(access, public_key, algorithms=["EdDSA"])["username"] == "quinn"
    assert not (tmp_path / GENERATED_KEY_FILE).exists()


def test_signing_key_from_jwt_private_key_even_on_one_line(start_auth: StartAuth) -> None:
    signer = TestSigner()
    one_line = signer.private_pem.decode().strip().replace("\n", "\\n")

    client = start_auth(jwt_private_key=one_line)

    assert client.get("/api/auth/jwks/").json()["keys"][0]["x"] == signer.jwks["keys"][0]["x"]


def test_without_a_key_a_container_refuses_to_start_and_says_why(
    auth_database_url: str, tmp_path: Path
) -> None:
    environment = {"AUTH_DATABASE_URL": auth_database_url, "DENTIAPRO_DATA_DIR": str(tmp_path)}

    no_key = _start_fails({**environment, "JWT_GENERATE_KEY": "false"})
    missing_file = _start_fails(
        {**environment, "JWT_PRIVATE_KEY_FILE": str(tmp_path / "nowhere.pem")}
    )

    assert "No JWT signing key: set JWT_PRIVATE_KEY (PEM) or JWT_PRIVATE_KEY_FILE" in no_key
    assert f"JWT_PRIVATE_KEY_FILE names {tmp_path / 'nowhere.pem'}" in missing_file
    assert not (tmp_path / GENERATED_KEY_FILE).exists()


def _database_dump(settings: AuthSettings) -> str:
    """Every row of every table of the auth database, as text (what a logical backup holds)."""
    engine = create_engine(settings)
    try:
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
            return "\n".join(
                repr(row)
                for table in tables
                for row in connection.execute(text(f'SELECT * FROM "{table}"'))
            )
    finally:
        engine.dispose()


def _secret_parts(pem: str) -> list[str]:
    """What would give a private key away: its PEM body and its raw 32 bytes (the JWK's d)."""
    body = "".join(line for line in pem.splitlines() if "-----" not in line)
    der = base64.b64decode(body)
    raw = der[-32:]
    return [body, base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), raw.hex()]


def test_no_private_key_sits_in_the_database(
    start_auth: StartAuth,
    auth_settings: Callable[..., AuthSettings],
    tmp_path: Path,
    join: Callable[..., httpx.Response],
    login: Login,
) -> None:
    """Issue 9: the key generated into the auth database let every backup mint superuser
    tokens. Now no table holds one: not the current key, not a rotated one."""
    client = start_auth(jwt_key_reload_interval=FAST_RELOAD)
    join(client, "backup")
    tokens = login(client, "backup")
    client.post("/api/auth/refresh/", json={"refresh": tokens["refresh"]})
    key_file = tmp_path / GENERATED_KEY_FILE
    first_pem = key_file.read_text()
    rotate_signing_key(auth_settings(jwt_key_reload_interval=FAST_RELOAD))

    dump = _database_dump(auth_settings())

    assert "PRIVATE KEY" not in dump
    for pem in (first_pem, key_file.read_text()):
        for part in _secret_parts(pem):
            assert part not in dump


# ---- rotation -----------------------------------------------------------------------------


def test_a_rotation_logs_nobody_out(
    start_auth: StartAuth,
    auth_settings: Callable[..., AuthSettings],
    tmp_path: Path,
    make_user: MakeUser,
    login: Login,
) -> None:
    client = start_auth(jwt_key_reload_interval=FAST_RELOAD)
    make_user("kim")
    before = login(client, "kim")
    old_kid = _kid(before["access"])

    rotated = rotate_signing_key(auth_settings(jwt_key_reload_interval=FAST_RELOAD))

    assert rotated.previous_kid == old_kid
    assert rotated.key_file == tmp_path / GENERATED_KEY_FILE
    assert stat.S_IMODE(rotated.key_file.stat().st_mode) == 0o600
    # Published before the file changed: no verifier meets the new kid before the JWKS does.
    assert set(_kids(client)) == {old_kid, rotated.kid}
    _eventually(
        lambda: _kid(login(client, "kim")["access"]) == rotated.kid,
        timeout=10,
        message="auth never signed with the rotated key",
    )
    # Tokens signed before the rotation keep working: refresh (rotated to the new key) and me.
    refreshed = client.post("/api/auth/refresh/", json={"refresh": before["refresh"]})
    assert refreshed.status_code == 200, refreshed.text
    assert _kid(refreshed.json()["refresh"]) == rotated.kid
    assert _me(client, before["access"]).status_code == 200
    assert set(_kids(client)) == {old_kid, rotated.kid}
    assert _kids(client)[0] == rotated.kid  # the current key first


def test_an_old_key_drops_out_of_the_jwks_once_its_tokens_have_expired(
    start_auth: StartAuth, auth_settings: Callable[..., AuthSettings]
) -> None:
    lifetimes = {
        "access_token_lifetime": 1,
        "refresh_token_lifetime": 2,
        "jwt_key_reload_interval": FAST_RELOAD,
    }
    client = start_auth(**lifetimes)
    old_kid = _kids(client)[0]

    rotated = rotate_signing_key(auth_settings(**lifetimes))
    switched = time.monotonic()

    assert set(_kids(client)) == {old_kid, rotated.kid}
    _eventually(
        lambda: _kids(client) == [rotated.kid],
        timeout=10,
        message="the old key stayed in the JWKS after its tokens expired",
    )
    # Not before its last token could have expired (2 s after it last signed).
    assert time.monotonic() - switched >= 1.5


def test_a_key_from_the_environment_is_rotated_by_replacing_the_secret(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    settings = auth_settings(jwt_private_key=TestSigner().private_pem.decode())

    with pytest.raises(KeyRotationError, match="comes from JWT_PRIVATE_KEY"):
        rotate_signing_key(settings)


def test_a_new_key_in_the_secret_is_picked_up_and_the_old_one_stays_published(
    start_auth: StartAuth, tmp_path: Path, make_user: MakeUser, login: Login
) -> None:
    """Kubernetes: the mounted secret changes under a running auth (no rotate command)."""
    key_file = tmp_path / "mounted" / "private-key.pem"
    key_file.parent.mkdir()
    first, second = TestSigner(), TestSigner()
    key_file.write_bytes(first.private_pem)
    client = start_auth(
        jwt_private_key_file=key_file, jwt_generate_key=False, jwt_key_reload_interval=FAST_RELOAD
    )
    make_user("lou")
    before = login(client, "lou")

    key_file.write_bytes(second.private_pem)

    _eventually(
        lambda: _kid(login(client, "lou")["access"]) == _kid_of(second),
        timeout=10,
        message="auth never signed with the key put into the secret",
    )
    assert set(_kids(client)) == {_kid_of(first), _kid_of(second)}
    assert client.post("/api/auth/refresh/", json={"refresh": before["refresh"]}).status_code == 200


# ---- the first release's key, in the database ---------------------------------------------


def _first_release_database_with_a_key(settings: AuthSettings, signer: TestSigner) -> None:
    """The auth database as the first release left it: its generated key in signing_key."""
    engine = create_engine(settings)
    config = alembic_config(migrations_dir(auth.db.__file__), settings.database_url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0003")
            connection.execute(
                text(
                    "INSERT INTO signing_key (name, kid, private_pem, created_at) "
                    "VALUES ('primary', :kid, :pem, CURRENT_TIMESTAMP)"
                ),
                {"kid": _kid_of(signer), "pem": signer.private_pem.decode()},
            )
    finally:
        engine.dispose()


def _legacy_rows(settings: AuthSettings) -> int:
    engine = create_engine(settings)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT COUNT(*) FROM signing_key")).scalar_one())
    finally:
        engine.dispose()


def _superuser_token(client: httpx.Client, legacy: TestSigner, superuser: tuple[str, str]) -> str:
    """A token the first release signed: the superuser's, with its key."""
    tokens = client.post(
        "/api/auth/login/", json={"username": superuser[0], "password": superuser[1]}
    ).json()
    me = _me(client, tokens["access"]).json()
    legacy.kid = _kid_of(legacy)
    return legacy.mint(user_id=me["id"], username=me["username"], is_superuser=True)


def test_the_first_release_key_is_exported_to_the_key_file_and_removed_from_the_database(
    auth_settings: Callable[..., AuthSettings],
    start_auth: StartAuth,
    tmp_path: Path,
    superuser: tuple[str, str],
    backend: str,
) -> None:
    legacy = TestSigner()
    settings = auth_settings()
    _first_release_database_with_a_key(settings, legacy)

    client = start_auth()

    key_file = tmp_path / GENERATED_KEY_FILE
    assert key_file.read_bytes().strip() == legacy.private_pem.strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert _kids(client) == [_kid_of(legacy)]  # still the current key: nobody logged out
    assert _me(client, _superuser_token(client, legacy, superuser)).status_code == 200
    assert _legacy_rows(settings) == 0
    assert "PRIVATE KEY" not in _database_dump(settings)
    if backend == "sqlite":  # nor the files, in the pages its row used to fill
        database = Path(settings.database_url.removeprefix("sqlite:///"))
        files = [database, database.with_name(database.name + "-wal")]
        content = b"".join(path.read_bytes() for path in files if path.exists())
        for part in _secret_parts(legacy.private_pem.decode()):
            assert part.encode() not in content


def test_with_a_key_configured_the_first_release_key_stays_published_as_a_previous_one(
    auth_settings: Callable[..., AuthSettings],
    start_auth: StartAuth,
    tmp_path: Path,
    superuser: tuple[str, str],
) -> None:
    """Containers: the operator now gives auth a key from a secret; tokens the generated key
    signed keep verifying until they expire."""
    legacy, configured = TestSigner(), TestSigner()
    settings = auth_settings()
    _first_release_database_with_a_key(settings, legacy)

    client = start_auth(jwt_private_key=configured.private_pem.decode(), jwt_generate_key=False)

    assert _kids(client) == [_kid_of(configured), _kid_of(legacy)]
    assert _me(client, _superuser_token(client, legacy, superuser)).status_code == 200
    assert _legacy_rows(settings) == 0
    assert not (tmp_path / GENERATED_KEY_FILE).exists()


def test_migrate_alone_leaves_the_first_release_key_for_auth_to_move(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    """The migration job runs before auth starts: it must not drop the key auth exports."""
    settings = auth_settings()
    _first_release_database_with_a_key(settings, TestSigner())

    migrate(settings)

    assert _legacy_rows(settings) == 1
