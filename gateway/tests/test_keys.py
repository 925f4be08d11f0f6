"""The edge fetches auth's JWKS over HTTP: at start-up, on an unknown kid, and keeps it."""

import time
from typing import Any

import httpx
import pytest
from common.testing import TestSigner, free_port, serve
from fastapi import FastAPI


def _verify(url: str, token: str) -> int:
    return httpx.get(
        f"{url}/verify/", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).status_code


def test_keys_are_fetched_from_auth_at_start_up(
    make_edge: Any, signer: TestSigner, wait_for_keys: Any
) -> None:
    with make_edge(real_jwks=True) as url:
        wait_for_keys(url)
        assert _verify(url, signer.mint()) == 200


def test_gateway_health_fails_while_no_key_could_be_loaded(
    make_edge: Any, signer: TestSigner
) -> None:
    with make_edge(real_jwks=True, auth_url=f"http://127.0.0.1:{free_port()}") as url:
        response = httpx.get(f"{url}/health/", timeout=10)
        # A token that may well be valid is not called invalid: 503, retry shortly.
        verify = httpx.get(f"{url}/verify/", headers=signer.auth_header(), timeout=10)
        metrics = httpx.get(f"{url}/metrics/", timeout=10).text
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["jwks"]["status"] == "fail"
    assert verify.status_code == 503
    assert verify.headers["Retry-After"] == "1"
    assert "not loaded" in verify.json()["detail"]
    assert 'edge_token_checks_total{reason="keys_unavailable",result="error"} 1.0' in metrics


def test_a_new_signing_key_is_fetched_when_a_token_names_it(
    make_edge: Any, jwks_server: Any, wait_for_keys: Any
) -> None:
    server, _ = jwks_server
    rotated = TestSigner()
    with make_edge(real_jwks=True) as url:
        wait_for_keys(url)
        assert _verify(url, rotated.mint()) == 401  # not published yet
        server.add_key(rotated)
        # Refetches happen at most once a second: allow for one throttle window.
        deadline = time.monotonic() + 3
        while _verify(url, rotated.mint()) != 200:
            assert time.monotonic() < deadline, "the new key was never fetched"
            time.sleep(0.1)


def test_cached_keys_keep_verifying_new_tokens_when_auth_is_down(
    make_edge: Any, signer: TestSigner, wait_for_keys: Any
) -> None:
    auth = FastAPI()

    @auth.get("/api/auth/jwks/")
    def jwks() -> dict[str, Any]:
        return signer.jwks

    auth_server = serve(auth)
    auth_url = auth_server.__enter__()
    auth_running = True
    try:
        with make_edge(real_jwks=True, auth_url=auth_url) as url:
            wait_for_keys(url)
            auth_server.__exit__(None, None, None)
            auth_running = False
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{auth_url}/api/auth/jwks/", timeout=2)
            assert _verify(url, signer.mint(user_id=9)) == 200
    finally:
        if auth_running:
            auth_server.__exit__(None, None, None)
