"""Every token attack at the gateway: each gets the 401 a DRF client expects, nothing passes."""

import json
from typing import Any

import httpx
import pytest
from common.testing import TestSigner, b64url, hs256_token, with_claims


@pytest.fixture
def member(api: Any) -> dict[str, Any]:
    """A tenant admin's username, tokens and tenant."""
    tenant = api.create_tenant()
    username, _ = api.tenant_admin(tenant)
    return {"username": username, "tokens": api.login(username), "tenant": tenant}


def _patients(gateway: httpx.Client, token: str) -> httpx.Response:
    return gateway.get("/api/patients/", headers={"Authorization": f"Bearer {token}"})


def _assert_token_not_valid(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "token_not_valid"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_no_token_is_refused_with_drf_words(gateway: httpx.Client) -> None:
    for path in (
        "/api/patients/",
        "/api/cabinets/",
        "/api/consultations/",
        "/api/tenants/",
        "/api/auth/me/",
    ):
        response = gateway.get(path)
        assert response.status_code == 401, path
        assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_garbage_token_is_refused(gateway: httpx.Client) -> None:
    _assert_token_not_valid(_patients(gateway, "not-a-jwt"))


def test_alg_none_token_is_refused(gateway: httpx.Client, member: dict[str, Any]) -> None:
    _, payload, _ = member["tokens"]["access"].split(".")
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    _assert_token_not_valid(_patients(gateway, f"{header}.{payload}."))


def test_tampered_token_is_refused(gateway: httpx.Client, member: dict[str, Any]) -> None:
    forged = with_claims(member["tokens"]["access"], is_superuser=True)
    _assert_token_not_valid(_patients(gateway, forged))
    _assert_token_not_valid(
        gateway.get("/api/tenants/", headers={"Authorization": f"Bearer {forged}"})
    )


def test_token_signed_with_another_key_is_refused(
    gateway: httpx.Client, running: Any, member: dict[str, Any]
) -> None:
    impostor = TestSigner(kid=running.signer.kid)  # right kid, wrong key
    _assert_token_not_valid(
        _patients(gateway, impostor.mint(tenant=member["tenant"]["schema_name"]))
    )
    _assert_token_not_valid(_patients(gateway, TestSigner().mint()))  # unknown kid


@pytest.mark.parametrize("encoding", ["pem", "raw", "jwk_x"])
def test_hs256_signed_with_the_public_key_is_refused(
    gateway: httpx.Client, running: Any, member: dict[str, Any], encoding: str
) -> None:
    # Algorithm confusion: everyone can read auth's public key from the JWKS.
    signer = running.signer
    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    claims = signer.claims(tenant=member["tenant"]["schema_name"], is_superuser=True)
    forged = hs256_token(header, claims, signer.public_key_encodings[encoding])
    _assert_token_not_valid(_patients(gateway, forged))
    _assert_token_not_valid(
        gateway.get("/api/tenants/", headers={"Authorization": f"Bearer {forged}"})
    )


def test_a_reused_refresh_token_revokes_its_whole_family(
    gateway: httpx.Client, member: dict[str, Any]
) -> None:
    stolen = member["tokens"]["refresh"]
    rotated = gateway.post("/api/auth/refresh/", json={"refresh": stolen})
    assert rotated.status_code == 200
    # The thief (or the victim) presents the spent token: theft is assumed ...
    reused = gateway.post("/api/auth/refresh/", json={"refresh": stolen})
    _assert_token_not_valid(reused)
    # ... and the token it was rotated into is revoked with it.
    successor = gateway.post("/api/auth/refresh/", json={"refresh": rotated.json()["refresh"]})
    _assert_token_not_valid(successor)


def test_expired_token_is_refused(
    gateway: httpx.Client, running: Any, member: dict[str, Any]
) -> None:
    expired = running.signer.mint(tenant=member["tenant"]["schema_name"], lifetime=-60)
    response = _patients(gateway, expired)
    _assert_token_not_valid(response)
    assert response.json()["detail"] == "Token is expired"


def test_refresh_token_is_not_an_access_token(
    gateway: httpx.Client, member: dict[str, Any]
) -> None:
    _assert_token_not_valid(_patients(gateway, member["tokens"]["refresh"]))
    # ... nor the reverse.
    wrong_way = gateway.post("/api/auth/refresh/", json={"refresh": member["tokens"]["access"]})
    assert wrong_way.status_code == 401


def test_valid_token_passes(gateway: httpx.Client, member: dict[str, Any]) -> None:
    assert _patients(gateway, member["tokens"]["access"]).status_code == 200


def test_deleted_tenants_tokens_stop_working_within_the_cache_lifetime(
    api: Any, gateway: httpx.Client, member: dict[str, Any], eventually: Any
) -> None:
    access = member["tokens"]["access"]
    assert _patients(gateway, access).status_code == 200
    deleted = gateway.delete(f"/api/tenants/{member['tenant']['id']}/", headers=api.superuser())
    assert deleted.status_code == 204
    # TENANT_CACHE_SECONDS is 2 in this suite (the contract's bound is one minute).
    eventually(lambda: _patients(gateway, access).status_code == 401, 5, "token still accepted")
    _assert_token_not_valid(_patients(gateway, access))

    def login() -> httpx.Response:
        return gateway.post(
            "/api/auth/login/", json={"username": member["username"], "password": api.password}
        )

    # Auth caches tenant answers for as long as the gateway does, but refreshes on its own
    # clock: the gateway (which refreshes every tenant's status twice per lifetime) may refuse
    # first.
    eventually(lambda: login().status_code == 401, 5, "login still allowed")
    assert login().status_code == 401
