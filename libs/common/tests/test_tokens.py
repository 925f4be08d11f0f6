"""Token verification through ``get_principal`` on a protected route, attacks included."""

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from common.testing import (
    TEST_ISSUER,
    TestSigner,
    b64url,
    forge_token,
    hs256_token,
    serve,
    with_claims,
)
from common.tokens import TokenVerifier
from fastapi import FastAPI

AppFactory = Callable[..., FastAPI]
NOT_PROVIDED = {"detail": "Authentication credentials were not provided."}
REQUIRED = ["exp", "iat", "jti", "sub", "tenant", "token_type", "iss"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_token_rejected(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "token_not_valid"
    assert set(response.json()) == {"detail", "code"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_valid_access_token_gives_the_principal(client: httpx.Client, signer: TestSigner) -> None:
    response = client.get("/api/me/", headers=signer.auth_header(user_id=7, tenant="clinic_b"))
    assert response.status_code == 200
    assert response.json() == {"user_id": 7, "tenant": "clinic_b", "is_superuser": False}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwdw=="},
    ],
)
def test_no_token_is_401_not_provided(client: httpx.Client, headers: dict[str, str]) -> None:
    response = client.get("/api/me/", headers=headers)
    assert response.status_code == 401
    assert response.json() == NOT_PROVIDED
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "garbage", ["garbage", "a.b.c", "....", b64url(b"{}") + "." + b64url(b"{}") + "."]
)
def test_garbage_token_is_rejected(client: httpx.Client, garbage: str) -> None:
    assert_token_rejected(client.get("/api/me/", headers=bearer(garbage)))


def test_alg_none_is_rejected(client: httpx.Client, signer: TestSigner) -> None:
    claims = signer.claims(is_superuser=True)
    for alg in ("none", "None", "NONE"):
        token = forge_token({"alg": alg, "typ": "JWT", "kid": signer.kid}, claims)
        assert_token_rejected(client.get("/api/me/", headers=bearer(token)))


@pytest.mark.parametrize("encoding", ["pem", "raw", "jwk_x"])
def test_hs256_signed_with_the_public_key_is_rejected(
    client: httpx.Client, signer: TestSigner, encoding: str
) -> None:
    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    secret = signer.public_key_encodings[encoding]
    token = hs256_token(header, signer.claims(is_superuser=True), secret)
    assert_token_rejected(client.get("/api/me/", headers=bearer(token)))


def test_tampered_payload_is_rejected(client: httpx.Client, signer: TestSigner) -> None:
    token = with_claims(signer.mint(user_id=5), sub="1", user_id=1, is_superuser=True)
    assert_token_rejected(client.get("/api/me/", headers=bearer(token)))


def test_tampered_signature_is_rejected(client: httpx.Client, signer: TestSigner) -> None:
    header, payload, signature = signer.mint().split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert_token_rejected(client.get("/api/me/", headers=bearer(f"{header}.{payload}.{flipped}")))


def test_token_from_another_key_with_the_same_kid_is_rejected(
    client: httpx.Client, signer: TestSigner
) -> None:
    impostor = TestSigner(kid=signer.kid)
    assert_token_rejected(client.get("/api/me/", headers=impostor.auth_header(is_superuser=True)))


def test_token_from_another_key_with_another_kid_is_rejected(client: httpx.Client) -> None:
    assert_token_rejected(client.get("/api/me/", headers=TestSigner().auth_header()))


def test_token_without_kid_is_rejected(client: httpx.Client, signer: TestSigner) -> None:
    token = jwt.encode(signer.claims(), signer.private_key, algorithm="EdDSA")
    assert_token_rejected(client.get("/api/me/", headers=bearer(token)))


def test_expired_token_is_rejected(client: httpx.Client, signer: TestSigner) -> None:
    response = client.get("/api/me/", headers=signer.auth_header(lifetime=-1))
    assert_token_rejected(response)
    assert response.json()["detail"] == "Token is expired"


def test_verified_token_is_not_accepted_after_it_expires(
    client: httpx.Client, signer: TestSigner
) -> None:
    token = signer.mint(lifetime=1)
    assert client.get("/api/me/", headers=bearer(token)).status_code == 200
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires - time.time()) + 1.05)
    # The verifier caches verified tokens: the cache must end at exp.
    response = client.get("/api/me/", headers=bearer(token))
    assert_token_rejected(response)
    assert response.json()["detail"] == "Token is expired"


def test_refresh_token_is_not_an_access_token(client: httpx.Client, signer: TestSigner) -> None:
    response = client.get("/api/me/", headers=signer.auth_header(token_type="refresh"))
    assert_token_rejected(response)
    assert response.json()["detail"] == "Token has wrong type"


def test_refresh_token_is_rejected_after_access_use_of_same_verifier(
    client: httpx.Client, signer: TestSigner
) -> None:
    # The verified-token cache must remember the type, not just the signature.
    refresh = signer.mint(token_type="refresh")
    assert_token_rejected(client.get("/api/me/", headers=bearer(refresh)))
    assert_token_rejected(client.get("/api/me/", headers=bearer(refresh)))


@pytest.mark.parametrize("claim", REQUIRED)
def test_token_missing_a_required_claim_is_rejected(
    client: httpx.Client, signer: TestSigner, claim: str
) -> None:
    claims = signer.claims()
    del claims[claim]
    assert_token_rejected(client.get("/api/me/", headers=bearer(signer.sign(claims))))


def test_token_with_non_numeric_subject_is_rejected(
    client: httpx.Client, signer: TestSigner
) -> None:
    claims = {**signer.claims(), "sub": "admin"}
    assert_token_rejected(client.get("/api/me/", headers=bearer(signer.sign(claims))))


def test_token_from_wrong_issuer_is_rejected(client: httpx.Client, signer: TestSigner) -> None:
    claims = {**signer.claims(), "iss": "someone-else"}
    assert_token_rejected(client.get("/api/me/", headers=bearer(signer.sign(claims))))


def test_token_with_future_iat_is_rejected(client: httpx.Client, signer: TestSigner) -> None:
    claims = signer.claims()
    claims["iat"] += 3600
    assert_token_rejected(client.get("/api/me/", headers=bearer(signer.sign(claims))))


# --- JWKS fetching ------------------------------------------------------------------------


class JwksSource:
    """A stand-in for auth's JWKS endpoint that can rotate keys or go down; counts calls."""

    def __init__(self, *signers: TestSigner) -> None:
        self.signers = list(signers)
        self.calls = 0
        self.down = False
        self.lock = threading.Lock()

    async def __call__(self) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
        if self.down:
            raise httpx.ConnectError("auth is down")
        return {"keys": [key for signer in self.signers for key in signer.jwks["keys"]]}


def test_unknown_kid_triggers_a_refetch_for_key_rotation(make_app: AppFactory) -> None:
    old, new = TestSigner(), TestSigner()
    source = JwksSource(old)
    verifier = TokenVerifier(source, issuer=TEST_ISSUER, refetch_interval=0)
    with serve(make_app(token_verifier=verifier)) as url:
        assert httpx.get(f"{url}/api/me/", headers=old.auth_header()).status_code == 200
        assert source.calls == 1
        source.signers = [new, old]  # auth rotated its key
        assert httpx.get(f"{url}/api/me/", headers=new.auth_header()).status_code == 200
        assert source.calls == 2
        assert httpx.get(f"{url}/api/me/", headers=old.auth_header()).status_code == 200
        assert source.calls == 2  # known kid: no fetch


def test_refetches_on_unknown_kids_are_rate_limited(make_app: AppFactory) -> None:
    trusted = TestSigner()
    source = JwksSource(trusted)
    verifier = TokenVerifier(source, issuer=TEST_ISSUER, refetch_interval=60)
    with serve(make_app(token_verifier=verifier)) as url, httpx.Client(base_url=url) as client:
        assert client.get("/api/me/", headers=trusted.auth_header()).status_code == 200
        for _ in range(20):
            assert_token_rejected(client.get("/api/me/", headers=TestSigner().auth_header()))
        assert source.calls == 1


def test_keys_are_kept_when_the_jwks_source_fails(make_app: AppFactory) -> None:
    trusted = TestSigner()
    source = JwksSource(trusted)
    verifier = TokenVerifier(source, issuer=TEST_ISSUER, refetch_interval=0)
    with serve(make_app(token_verifier=verifier)) as url, httpx.Client(base_url=url) as client:
        assert client.get("/api/me/", headers=trusted.auth_header()).status_code == 200
        source.down = True
        assert_token_rejected(client.get("/api/me/", headers=TestSigner().auth_header()))
        assert source.calls == 2
        # A fresh token (not in the verified cache) still verifies with the kept key.
        assert client.get("/api/me/", headers=trusted.auth_header(user_id=99)).status_code == 200


def test_keys_are_kept_when_the_jwks_source_returns_no_usable_key(make_app: AppFactory) -> None:
    trusted = TestSigner()
    documents = iter(
        [trusted.jwks, {"keys": []}, {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}]}]
    )

    async def source() -> dict[str, Any]:
        return next(documents)

    verifier = TokenVerifier(source, issuer=TEST_ISSUER, refetch_interval=0)
    with serve(make_app(token_verifier=verifier)) as url, httpx.Client(base_url=url) as client:
        assert client.get("/api/me/", headers=trusted.auth_header()).status_code == 200
        for _ in range(2):  # empty, then only a symmetric key: both ignored
            assert_token_rejected(client.get("/api/me/", headers=TestSigner().auth_header()))
        assert client.get("/api/me/", headers=trusted.auth_header(user_id=3)).status_code == 200


def assert_keys_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == {
        "detail": "Signing keys not loaded from auth yet, try again shortly."
    }
    assert response.headers["Retry-After"] == "1"


def test_auth_down_from_the_start_gives_503_not_401(make_app: AppFactory) -> None:
    """No key held: the token may be valid, so it is not called invalid (a client would drop it)."""
    source = JwksSource(TestSigner())
    source.down = True
    verifier = TokenVerifier(source, issuer=TEST_ISSUER, refetch_interval=0)
    with serve(make_app(token_verifier=verifier)) as url:
        response = httpx.get(f"{url}/api/me/", headers=source.signers[0].auth_header())
    assert_keys_unavailable(response)


def test_a_token_racing_the_first_jwks_fetch_gets_503_then_verifies(make_app: AppFactory) -> None:
    """The start-up race CI once hit: the prefetch failed (auth not up yet) a moment ago, so the
    rate limit holds back a refetch; the request is told to retry, and a retry succeeds."""
    signer = TestSigner()
    source = JwksSource(signer)
    source.down = True
    verifier = TokenVerifier(source, issuer=TEST_ISSUER, refetch_interval=60)
    assert not asyncio.run(verifier.refresh_keys())  # the prefetch's failed attempt
    source.down = False  # auth is up now, but the next fetch may only come a second later
    with serve(make_app(token_verifier=verifier)) as url, httpx.Client(base_url=url) as client:
        assert_keys_unavailable(client.get("/api/me/", headers=signer.auth_header()))
        assert source.calls == 1
        time.sleep(1.05)
        assert client.get("/api/me/", headers=signer.auth_header()).status_code == 200
    assert source.calls == 2


def test_check_keys_fails_until_a_key_is_held() -> None:
    from common.tokens import KeysUnavailable

    signer = TestSigner()
    source = JwksSource(signer)
    source.down = True
    verifier = TokenVerifier(source, issuer=TEST_ISSUER, refetch_interval=0)
    with pytest.raises(KeysUnavailable):
        verifier.check_keys()
    source.down = False
    assert asyncio.run(verifier.refresh_keys())
    verifier.check_keys()
    source.down = True
    assert asyncio.run(verifier.refresh_keys())  # auth gone again: the held keys stay
    verifier.check_keys()


def test_keys_prefetched_at_start_keep_verifying_after_auth_goes_down() -> None:
    """A service fetches the JWKS while it starts (retrying), not on its first request: a token
    still verifies if auth died before that request."""
    from common.tokens import keys_prefetched

    signer = TestSigner()
    calls = {"count": 0, "auth_up": False}

    async def source() -> dict[str, Any]:
        calls["count"] += 1
        if not calls["auth_up"]:
            raise ConnectionError("auth is starting")
        return signer.jwks

    verifier = TokenVerifier(source, issuer=signer.issuer, refetch_interval=60)

    async def scenario() -> None:
        async with keys_prefetched(verifier, interval=0.05):
            await asyncio.sleep(0.2)  # auth still down: retried, not given up
            calls["auth_up"] = True
            for _ in range(100):
                if verifier.has_keys:
                    break
                await asyncio.sleep(0.05)
        calls["auth_up"] = False  # auth dies before the service's first request

    asyncio.run(scenario())
    assert calls["count"] >= 2
    assert verifier.verify(signer.mint(tenant="acme"))["tenant"] == "acme"


def test_the_jwks_client_is_closed_when_the_app_stops() -> None:
    from common.testing import JwksServer
    from common.tokens import http_jwks_source, keys_prefetched

    signer = TestSigner()
    with serve(JwksServer(signer).app) as auth_url:
        source = http_jwks_source(f"{auth_url}/api/auth/jwks/")
        verifier = TokenVerifier(source, issuer=signer.issuer)

        async def app_lifetime() -> None:
            async with keys_prefetched(verifier, interval=0.05):
                for _ in range(200):
                    if verifier.has_keys:
                        break
                    await asyncio.sleep(0.05)
                assert not source.is_closed

        asyncio.run(app_lifetime())
    assert verifier.has_keys
    assert source.is_closed


def test_an_expired_cached_token_whose_key_was_rotated_out_is_rejected() -> None:
    """The verified cache holds a token until its exp only: after that it is judged again, and
    a key rotated out of the JWKS (refetched for it) no longer verifies it."""
    from common.errors import TokenInvalid

    old, new = TestSigner(), TestSigner()
    source = JwksSource(old)
    verifier = TokenVerifier(source, issuer=TEST_ISSUER, refetch_interval=0)
    token = old.mint(lifetime=1)

    async def scenario() -> None:
        await verifier.verify_async(token)  # fetches the JWKS, then cached until exp
        source.signers = [new]  # auth rotated the old key out
        await verifier.verify_async(new.mint())  # unknown kid: refetched, the old key is gone
        await asyncio.sleep(2.05)  # past the cached exp (whole seconds, at most 2 s away)
        with pytest.raises(TokenInvalid):
            await verifier.verify_async(token)

    asyncio.run(scenario())
    assert source.calls == 3
