"""Every token attack at the gateway: each gets the 401 a DRF client expects, nothing passes."""

import base64
import json
from typing import Any

import httpx
import pytest
from common.testing import TestSigner


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


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
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    _assert_token_not_valid(_patients(gateway, f"{header}.{payload}."))


def test_tampered_token_is_refused(gateway: httpx.Client, member: dict[str, Any]) -> None:
    header, payload, signature = member["tokens"]["access"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["is_superuser"] = True
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
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

    # Auth caches tenant answers for as long as the edge does, but refreshes on its own clock:
    # the edge (which refreshes every tenant's status twice per lifetime) may refuse first.
    eventually(lambda: login().status_code == 401, 5, "login still allowed")
    assert login().status_code == 401
