"""ForwardAuth ``/verify/``: what the gateway lets through, and the 401s clients receive."""

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from common.testing import TestSigner, forge_token, free_port, hs256_token, serve, with_claims
from prometheus_client.parser import text_string_to_metric_families


def _verify(url: str, token: str | None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.get(f"{url}/verify/", headers=headers, timeout=10)


def _token_checks(url: str) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{url}/metrics/", timeout=10).text
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "edge_token_checks":
            for sample in family.samples:
                if sample.name == "edge_token_checks_total":
                    counts[(sample.labels["result"], sample.labels["reason"])] = sample.value
    return counts


def _resolve_calls(tenants_url: str) -> float:
    """Single lookups the tenants service has answered, whatever their status code."""
    text = httpx.get(f"{tenants_url}/metrics/", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "http_requests_total"
        and sample.labels.get("route") == "/internal/tenants/resolve/"
    )


def _create_tenant(tenants_url: str, headers: dict[str, str]) -> dict[str, Any]:
    schema = f"t{uuid.uuid4().hex[:12]}"
    created = httpx.post(
        f"{tenants_url}/api/tenants/",
        json={"name": schema, "schema_name": schema, "domain_url": f"{schema}.example.com"},
        headers=headers,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    tenant: dict[str, Any] = created.json()
    return tenant


def _delete_tenant(tenants_url: str, headers: dict[str, str], tenant: dict[str, Any]) -> None:
    deleted = httpx.delete(
        f"{tenants_url}/api/tenants/{tenant['id']}/", headers=headers, timeout=10
    )
    assert deleted.status_code == 204, deleted.text


def _assert_token_not_valid(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["code"] == "token_not_valid"


def test_valid_access_token_passes_with_identity_headers_and_empty_body(
    edge_url: str, signer: TestSigner
) -> None:
    token = signer.mint(user_id=42, tenant="public")
    response = _verify(edge_url, token, **{"X-Request-ID": "client-chosen-id-1"})
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["x-user-id"] == "42"
    assert response.headers["x-tenant"] == "public"
    assert response.headers["x-request-id"] == "client-chosen-id-1"


def test_invalid_client_request_id_is_replaced_by_a_new_one(
    edge_url: str, signer: TestSigner
) -> None:
    response = _verify(edge_url, signer.mint(), **{"X-Request-ID": "x" * 200})
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert request_id != "x" * 200
    assert 0 < len(request_id) <= 128


def test_missing_token_is_refused_with_drf_message(edge_url: str) -> None:
    response = _verify(edge_url, None)
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "x-user-id" not in response.headers


def test_non_bearer_authorization_is_refused(edge_url: str) -> None:
    response = httpx.get(
        f"{edge_url}/verify/", headers={"Authorization": "Basic cm9vdDpyb290"}, timeout=10
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "Authentication credentials were not provided."


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJFZERTQSJ9.e30.AAAA"])
def test_garbage_token_is_refused(edge_url: str, token: str) -> None:
    _assert_token_not_valid(_verify(edge_url, token))


def test_expired_token_is_refused(edge_url: str, signer: TestSigner) -> None:
    response = _verify(edge_url, signer.mint(lifetime=-30))
    _assert_token_not_valid(response)
    assert response.json()["detail"] == "Token is expired"


def test_refresh_token_is_not_an_access_token(edge_url: str, signer: TestSigner) -> None:
    response = _verify(edge_url, signer.mint(token_type="refresh"))
    _assert_token_not_valid(response)
    assert response.json()["detail"] == "Token has wrong type"


def test_token_signed_by_another_key_with_the_same_kid_is_refused(
    edge_url: str, signer: TestSigner
) -> None:
    impostor = TestSigner(kid=signer.kid)
    _assert_token_not_valid(_verify(edge_url, impostor.mint()))


def test_token_with_unknown_kid_is_refused(edge_url: str) -> None:
    _assert_token_not_valid(_verify(edge_url, TestSigner().mint()))


def test_alg_none_token_is_refused(edge_url: str, signer: TestSigner) -> None:
    token = forge_token({"alg": "none", "typ": "JWT", "kid": signer.kid}, signer.claims())
    _assert_token_not_valid(_verify(edge_url, token))


def test_hs256_signed_with_the_public_key_is_refused(edge_url: str, signer: TestSigner) -> None:
    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    token = hs256_token(header, signer.claims(), signer.public_key_encodings["pem"])
    _assert_token_not_valid(_verify(edge_url, token))


def test_tampered_claims_are_refused(edge_url: str, signer: TestSigner) -> None:
    tampered = with_claims(signer.mint(user_id=7), sub="1", user_id=1, is_superuser=True)
    _assert_token_not_valid(_verify(edge_url, tampered))


def test_token_of_unknown_tenant_is_refused(edge_url: str, signer: TestSigner) -> None:
    response = _verify(edge_url, signer.mint(tenant="nosuchtenant"))
    _assert_token_not_valid(response)
    assert response.json()["detail"] == "Token's tenant is no longer active."


def test_deleted_tenant_is_refused_once_the_cached_answer_expires(
    make_edge: Any, signer: TestSigner, tenants_url: str, superuser_headers: dict[str, str]
) -> None:
    schema = f"t{free_port()}"
    created = httpx.post(
        f"{tenants_url}/api/tenants/",
        json={"name": "Doomed", "schema_name": schema, "domain_url": f"{schema}.example.com"},
        headers=superuser_headers,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    token = signer.mint(tenant=schema)
    with make_edge(tenant_cache_seconds=1.0) as url:
        assert _verify(url, token).status_code == 200
        deleted = httpx.delete(
            f"{tenants_url}/api/tenants/{created.json()['id']}/",
            headers=superuser_headers,
            timeout=10,
        )
        assert deleted.status_code == 204
        # The earlier answer may stand (or a refresh may already have replaced it) until it
        # is a cache lifetime old; after that the tenant's tokens stop working.
        time.sleep(1.1)
        _assert_token_not_valid(_verify(url, token))


def test_tenants_service_unreachable_without_cached_answer_is_503(
    make_edge: Any, signer: TestSigner
) -> None:
    with make_edge(tenants_url=f"http://127.0.0.1:{free_port()}") as url:
        response = _verify(url, signer.mint())
    assert response.status_code == 503
    assert response.json() == {"detail": "Tenant registry unavailable, try again shortly."}


def test_token_checks_are_counted_by_result_and_reason(edge_url: str, signer: TestSigner) -> None:
    before = _token_checks(edge_url)
    _verify(edge_url, signer.mint())
    _verify(edge_url, None)
    _verify(edge_url, "garbage")
    _verify(edge_url, signer.mint(lifetime=-30))
    _verify(edge_url, signer.mint(token_type="refresh"))
    _verify(edge_url, signer.mint(tenant="nosuchtenant"))
    after = _token_checks(edge_url)
    for key in [
        ("ok", "valid"),
        ("denied", "missing"),
        ("denied", "invalid"),
        ("denied", "expired"),
        ("denied", "wrong_type"),
        ("denied", "inactive_tenant"),
    ]:
        assert after.get(key, 0) - before.get(key, 0) >= 1, key


def test_verify_is_served_ahead_of_the_router_with_request_id_metrics_and_any_method(
    edge_url: str, signer: TestSigner
) -> None:
    """/verify/ is a bare ASGI endpoint: it must keep what the middlewares give every route."""
    token = signer.mint(user_id=5, tenant="public")
    no_slash = httpx.get(f"{edge_url}/verify", headers={"Authorization": f"Bearer {token}"})
    assert no_slash.status_code == 200
    assert len(no_slash.headers["x-request-id"]) == 32
    # ForwardAuth sends GET, but the check does not depend on the method.
    posted = httpx.post(f"{edge_url}/verify/", headers={"Authorization": f"Bearer {token}"})
    assert posted.status_code == 200
    assert posted.headers["x-user-id"] == "5"
    denied = httpx.post(f"{edge_url}/verify/")
    assert denied.status_code == 401
    assert denied.json() == {"detail": "Authentication credentials were not provided."}
    metrics = httpx.get(f"{edge_url}/metrics/", timeout=10).text
    assert 'http_requests_total{method="GET",route="/verify/",status="200"}' in metrics
    assert 'http_requests_total{method="POST",route="/verify/",status="401"}' in metrics


def test_tenants_known_at_the_last_refresh_need_no_single_lookup(
    make_edge: Any, signer: TestSigner, tenants_url: str, superuser_headers: dict[str, str]
) -> None:
    live = [_create_tenant(tenants_url, superuser_headers)["schema_name"] for _ in range(5)]
    gone = _create_tenant(tenants_url, superuser_headers)
    _delete_tenant(tenants_url, superuser_headers, gone)
    with make_edge() as url:  # the edge refreshes every tenant's status before it serves
        before = _resolve_calls(tenants_url)
        for schema in live:
            assert _verify(url, signer.mint(tenant=schema)).status_code == 200, schema
        _assert_token_not_valid(_verify(url, signer.mint(tenant=gone["schema_name"])))
        assert _resolve_calls(tenants_url) == before
        # A tenant created since the refresh is looked up on its own, once.
        newcomer = _create_tenant(tenants_url, superuser_headers)["schema_name"]
        for _ in range(3):
            assert _verify(url, signer.mint(tenant=newcomer)).status_code == 200
        assert _resolve_calls(tenants_url) == before + 1


@pytest.fixture
def stoppable_tenants(
    signer: TestSigner, tmp_path: Any, internal_token: str
) -> Iterator[tuple[str, Any]]:
    """The real tenants app on its own uvicorn (in a thread: a test may stop it midway);
    yields its URL and a function that stops it."""
    from tenants.main import create_app as create_tenants_app
    from tenants.settings import TenantsSettings

    tenants_app = create_tenants_app(
        TenantsSettings(data_dir=tmp_path, internal_token=internal_token),
        token_verifier=signer.verifier(),
    )
    server = serve(tenants_app)
    url = server.__enter__()
    running = True

    def stop() -> None:
        nonlocal running
        if running:
            running = False
            server.__exit__(None, None, None)

    try:
        yield url, stop
    finally:
        stop()


def test_refreshed_answers_are_kept_when_a_refresh_fails(
    make_edge: Any,
    signer: TestSigner,
    stoppable_tenants: tuple[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenants_url, stop_tenants = stoppable_tenants
    with make_edge(tenants_url=tenants_url, tenant_cache_seconds=0.4) as url:
        stop_tenants()  # "public" was only ever seen by the refresh at start-up
        time.sleep(0.6)  # refreshes (every 0.2 s) fail; the answer is past its cache lifetime
        # A recent answer is still used (well within the one-minute bound) ...
        assert _verify(url, signer.mint(tenant="public")).status_code == 200
        # ... but a tenant never seen before cannot be vouched for.
        assert _verify(url, signer.mint(tenant="neverseen")).status_code == 503
    warnings = [line for line in capsys.readouterr().out.splitlines() if "refresh failed" in line]
    assert warnings
    assert not any("public" in line for line in warnings)


def test_an_answer_older_than_the_staleness_bound_is_not_trusted(
    make_edge: Any,
    signer: TestSigner,
    stoppable_tenants: tuple[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The contract's bound is one minute; shortened here so the test need not wait for it,
    # yet long enough that a loaded machine still checks within it.
    bound = 5.0
    monkeypatch.setattr("edge.tenants.MAX_TENANT_STALENESS", bound)
    tenants_url, stop_tenants = stoppable_tenants
    with make_edge(tenants_url=tenants_url, tenant_cache_seconds=0.4) as url:
        stop_tenants()
        # No answer can be fresher than this: every refresh from now on fails.
        stopped_at = time.monotonic()
        time.sleep(0.5)  # past the cache lifetime: the edge asks, fails, falls back
        assert _verify(url, signer.mint(tenant="public")).status_code == 200  # within bound
        time.sleep(max(0.0, stopped_at + bound + 0.3 - time.monotonic()))
        # Past the bound with the registry still down: a deleted tenant's tokens could be
        # passing, so the edge refuses to vouch (503), never answers "active".
        response = _verify(url, signer.mint(tenant="public"))
        assert response.status_code == 503
        assert response.json() == {"detail": "Tenant registry unavailable, try again shortly."}
