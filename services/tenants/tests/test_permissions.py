"""Every /api/tenants/ route: 401 without or with a bad token, 403 for a non-superuser; and
every token attack against a superuser-only route is a 401 ``token_not_valid``."""

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from common.testing import TestSigner, forge_token, hs256_token, serve, with_claims
from tenants.main import create_app

BODY = {"name": "Nope", "schema_name": "nope_schema", "domain_url": "nope.test"}
ROUTES = [
    ("GET", "/api/tenants/"),
    ("POST", "/api/tenants/"),
    ("GET", "/api/tenants/{id}/"),
    ("PUT", "/api/tenants/{id}/"),
    ("PATCH", "/api/tenants/{id}/"),
    ("DELETE", "/api/tenants/{id}/"),
    # A missing or non-numeric id must not reveal anything before authentication.
    ("GET", "/api/tenants/987654321/"),
    ("GET", "/api/tenants/abc/"),
]
NOT_PROVIDED = {"detail": "Authentication credentials were not provided."}
TOKEN_NOT_VALID = {"detail": "Given token not valid for any token type", "code": "token_not_valid"}


@pytest.fixture
def target(new_tenant: Callable[..., dict[str, Any]]) -> int:
    return int(new_tenant()["id"])


def call(
    client: httpx.Client,
    method: str,
    path: str,
    target: int,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    json = BODY if method in ("POST", "PUT", "PATCH") else None
    return client.request(method, path.format(id=target), json=json, headers=headers)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_route_without_token_is_a_401(
    anonymous: httpx.Client, api: httpx.Client, target: int, method: str, path: str
) -> None:
    response = call(anonymous, method, path, target)
    assert response.status_code == 401
    assert response.json() == NOT_PROVIDED
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.get(f"/api/tenants/{target}/").status_code == 200  # nothing changed


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_route_with_non_superuser_token_is_a_403(
    anonymous: httpx.Client,
    api: httpx.Client,
    user_headers: dict[str, str],
    target: int,
    method: str,
    path: str,
) -> None:
    response = call(anonymous, method, path, target, headers=user_headers)
    assert response.status_code == 403
    assert response.json() == {"detail": "You do not have permission to perform this action."}
    assert api.get(f"/api/tenants/{target}/").json()["name"] != "Nope"


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_route_with_invalid_token_is_a_401(
    anonymous: httpx.Client, target: int, method: str, path: str
) -> None:
    forged = TestSigner().mint(is_superuser=True)  # a key the service does not trust
    response = call(anonymous, method, path, target, headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        ({"lifetime": -5}, "Token is expired"),
        ({"token_type": "refresh"}, "Token has wrong type"),
    ],
)
def test_expired_or_refresh_superuser_token_is_a_401(
    anonymous: httpx.Client, signer: TestSigner, claims: dict[str, object], detail: str
) -> None:
    token = signer.mint(is_superuser=True, **claims)
    response = anonymous.get("/api/tenants/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json() == {"detail": detail, "code": "token_not_valid"}


def test_garbage_bearer_token_is_a_401(anonymous: httpx.Client) -> None:
    response = anonymous.get("/api/tenants/", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_superuser_of_any_tenant_claim_is_allowed(
    anonymous: httpx.Client, signer: TestSigner
) -> None:
    headers = signer.auth_header(is_superuser=True, tenant="public", user_id=int(time.time()))
    assert anonymous.get("/api/tenants/", headers=headers).status_code == 200


INTERNAL_PATHS = ["/internal/tenants/resolve/?schema_name=public", "/internal/tenants/status/"]


@pytest.mark.parametrize("path", INTERNAL_PATHS)
def test_internal_paths_need_the_shared_secret_not_a_user_token(
    anonymous: httpx.Client, internal_headers: dict[str, str], signer: TestSigner, path: str
) -> None:
    missing = anonymous.get(path)
    assert missing.status_code == 401
    assert missing.json() == {"detail": "Internal API credential not provided."}
    # A superuser's access token is no credential here, and neither is a guess.
    superuser = signer.auth_header(is_superuser=True)
    assert anonymous.get(path, headers=superuser).status_code == 401
    token = internal_headers["X-Internal-Token"]
    for guess in ("", "x", token[:-1], token + "x", "é".encode() * 8):
        response = anonymous.get(path, headers={"X-Internal-Token": guess})
        assert response.status_code in (401, 403), guess
    assert anonymous.get(path, headers=internal_headers).status_code == 200


def test_internal_paths_are_closed_when_no_secret_is_configured(
    make_settings: Callable[..., Any], signer: TestSigner, database_url: Callable[[str], str]
) -> None:
    settings = make_settings(database_url=database_url("tenants"), internal_token=None)
    with serve(create_app(settings, token_verifier=signer.verifier())) as url:
        for path in INTERNAL_PATHS:
            response = httpx.get(f"{url}{path}", headers={"X-Internal-Token": "anything"})
            assert response.status_code == 403
            assert response.json() == {
                "detail": "The internal API is closed: no credential is configured."
            }


def test_internal_paths_are_not_in_the_openapi_document(anonymous: httpx.Client) -> None:
    paths = anonymous.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/internal")]


# --- token attacks: each aims at a superuser-only route and must be refused as invalid ------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_token_not_valid(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == TOKEN_NOT_VALID
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_alg_none_superuser_token_is_a_401(
    anonymous: httpx.Client, signer: TestSigner, alg: str
) -> None:
    header = {"alg": alg, "typ": "JWT", "kid": signer.kid}
    token = forge_token(header, signer.claims(is_superuser=True))
    assert_token_not_valid(anonymous.get("/api/tenants/", headers=bearer(token)))


def test_non_superuser_token_edited_to_superuser_is_a_401_not_a_200(
    anonymous: httpx.Client, signer: TestSigner
) -> None:
    genuine = signer.mint(user_id=31, username="dentist", is_superuser=False)
    # The genuine token is verified (and cached by the verifier) and lacks only the right.
    assert anonymous.get("/api/tenants/", headers=bearer(genuine)).status_code == 403
    escalated = with_claims(genuine, is_superuser=True)  # original header and signature
    assert_token_not_valid(anonymous.get("/api/tenants/", headers=bearer(escalated)))


@pytest.mark.parametrize(
    ("claims", "edit"),
    [
        pytest.param({"lifetime": -5}, {"exp": int(time.time()) + 3600}, id="expired-revived"),
        pytest.param({"token_type": "refresh"}, {"token_type": "access"}, id="refresh-as-access"),
    ],
)
def test_superuser_token_with_an_edited_claim_is_a_401(
    anonymous: httpx.Client, signer: TestSigner, claims: dict[str, Any], edit: dict[str, Any]
) -> None:
    tampered = with_claims(signer.mint(is_superuser=True, **claims), **edit)
    assert_token_not_valid(anonymous.get("/api/tenants/", headers=bearer(tampered)))


@pytest.mark.parametrize("encoding", ["pem", "raw", "jwk_x"])
def test_hs256_token_signed_with_the_public_key_is_a_401(
    anonymous: httpx.Client, signer: TestSigner, encoding: str
) -> None:
    """Algorithm confusion: the public key (anyone may read it) used as an HMAC secret."""
    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    secret = signer.public_key_encodings[encoding]
    token = hs256_token(header, signer.claims(is_superuser=True), secret)
    assert_token_not_valid(anonymous.get("/api/tenants/", headers=bearer(token)))


def test_token_signed_by_another_key_under_the_trusted_kid_is_a_401(
    anonymous: httpx.Client, signer: TestSigner
) -> None:
    impostor = TestSigner(kid=signer.kid)
    token = impostor.mint(is_superuser=True)
    assert_token_not_valid(anonymous.get("/api/tenants/", headers=bearer(token)))
