"""GET /api/auth/me/, and every way a forged or misused token is refused there."""

import base64
import json
import time
from collections.abc import Callable
from datetime import datetime

import httpx
import jwt
import pytest
from auth.models import Role, User
from auth.tokens import Signer
from common.testing import TestSigner
from cryptography.hazmat.primitives import serialization
from sqlmodel import Session

StartAuth = Callable[..., httpx.Client]
MakeUser = Callable[..., User]
Login = Callable[..., dict[str, str]]
NOT_PROVIDED = {"detail": "Authentication credentials were not provided."}


@pytest.fixture
def key() -> TestSigner:
    """The server's signing key, so tests can mint tokens that differ in one respect only."""
    return TestSigner()


@pytest.fixture
def server(start_auth: StartAuth, key: TestSigner) -> httpx.Client:
    return start_auth(jwt_private_key=key.private_pem.decode())


@pytest.fixture
def signer(key: TestSigner) -> Signer:
    return Signer.from_pem(key.private_pem.decode(), issuer="dentiapro-auth")


@pytest.fixture
def user(make_user: MakeUser) -> User:
    return make_user("rosa", role=Role.ADMIN)


def _me(client: httpx.Client, token: str | None = None, scheme: str = "Bearer") -> httpx.Response:
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    return client.get("/api/auth/me/", headers=headers)


def _assert_token_refused(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"
    assert "detail" in response.json()
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_me_describes_the_caller(server: httpx.Client, user: User, login: Login) -> None:
    response = _me(server, login(server, "rosa")["access"])

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "id": user.id,
        "username": "rosa",
        "email": "rosa@example.com",
        "tenant": "public",
        "role": "admin",
        "is_active": True,
        "is_superuser": False,
        "date_joined": body["date_joined"],
        "updated_at": body["updated_at"],
    }
    assert datetime.fromisoformat(body["date_joined"]).utcoffset() is not None
    assert datetime.fromisoformat(body["updated_at"]) >= datetime.fromisoformat(body["date_joined"])


def test_me_without_a_token_is_a_401(server: httpx.Client) -> None:
    response = _me(server)

    assert response.status_code == 401
    assert response.json() == NOT_PROVIDED
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_me_with_another_scheme_is_not_authenticated(server: httpx.Client) -> None:
    response = _me(server, "dXNlcjpwYXNz", scheme="Basic")

    assert response.status_code == 401
    assert response.json() == NOT_PROVIDED


def test_me_refuses_garbage(server: httpx.Client) -> None:
    for token in ["garbage", "a.b.c", "e30.e30.", "Bearer"]:
        _assert_token_refused(_me(server, token))


def test_me_refuses_alg_none(server: httpx.Client, signer: Signer, user: User) -> None:
    _, claims = signer.mint(user, token_type="access", lifetime=300)
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': signer.kid})}.{_b64(claims)}."

    _assert_token_refused(_me(server, unsigned))


def test_me_refuses_hs256_signed_with_the_public_key(
    server: httpx.Client, signer: Signer, user: User, key: TestSigner
) -> None:
    _, claims = signer.mint(user, token_type="access", lifetime=300)
    public_raw = key.private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    for secret in [public_raw, signer.public_jwk["x"].encode()]:
        forged = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": signer.kid})

        _assert_token_refused(_me(server, forged))


def test_me_refuses_a_tampered_payload(
    server: httpx.Client, user: User, make_user: MakeUser, login: Login
) -> None:
    other = make_user("sam")
    header, payload, signature = login(server, "rosa")["access"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(sub=str(other.id), user_id=other.id, is_superuser=True)

    _assert_token_refused(_me(server, f"{header}.{_b64(claims)}.{signature}"))


def test_me_refuses_a_token_signed_by_another_key(
    server: httpx.Client, signer: Signer, user: User
) -> None:
    assert user.id is not None
    # Same kid as the server's key, and a kid the server does not know.
    for impostor in [TestSigner(kid=signer.kid), TestSigner()]:
        token = impostor.mint(user_id=user.id, username="rosa", tenant="public")

        _assert_token_refused(_me(server, token))


def test_me_refuses_an_expired_token(server: httpx.Client, signer: Signer, user: User) -> None:
    expired, _ = signer.mint(user, token_type="access", lifetime=-5)

    _assert_token_refused(_me(server, expired))


def test_me_accepts_a_token_minted_with_the_server_key(
    server: httpx.Client, signer: Signer, user: User
) -> None:
    # The control for the attacks above: only the one altered property makes them fail.
    token, _ = signer.mint(user, token_type="access", lifetime=60)

    assert _me(server, token).status_code == 200


def test_me_refuses_a_token_from_another_issuer(server: httpx.Client, user: User) -> None:
    key_signer = Signer.from_pem(
        TestSigner().private_pem.decode(), issuer="someone-else"
    )  # different key and issuer
    token, _ = key_signer.mint(user, token_type="access", lifetime=60)

    _assert_token_refused(_me(server, token))


def test_me_refuses_a_refresh_token(server: httpx.Client, user: User, login: Login) -> None:
    _assert_token_refused(_me(server, login(server, "rosa")["refresh"]))


def test_me_refuses_the_token_of_a_deactivated_user(
    server: httpx.Client, user: User, login: Login, db: Session
) -> None:
    access = login(server, "rosa")["access"]
    user.is_active = False
    db.add(user)
    db.commit()

    response = _me(server, access)

    assert response.status_code == 401
    assert response.json() == {"detail": "User is inactive"}


def test_me_refuses_the_token_of_a_deleted_user(
    server: httpx.Client, user: User, login: Login, db: Session
) -> None:
    access = login(server, "rosa")["access"]
    db.delete(user)
    db.commit()

    response = _me(server, access)

    assert response.status_code == 401
    assert response.json() == {"detail": "User not found"}


def test_access_token_expires_after_its_lifetime(
    start_auth: StartAuth, make_user: MakeUser, login: Login
) -> None:
    client = start_auth(access_token_lifetime=1)
    make_user("tess")
    access = login(client, "tess")["access"]
    expires_at = jwt.decode(access, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires_at + 1.1 - time.time()))

    _assert_token_refused(_me(client, access))
