"""The token check inside Traefik (plugins-local/src/dentiapro/tokencheck), through the real
Traefik: what reaches a service, and every 401/503 a client gets instead."""

import concurrent.futures
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from common.testing import (
    TestSigner,
    b64url,
    forge_token,
    free_port,
    hs256_token,
    serve,
    with_claims,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from stand_ins import AuthStandIn, GatewayFactory, TenantsStandIn, TokenGateway

PATIENTS = "/api/patients/"
NOT_VALID = "Given token not valid for any token type"


class RsaSigner:
    """An RS256 key published beside the Ed25519 ones (auth may sign with either)."""

    def __init__(self, signer: TestSigner) -> None:
        self.kid = uuid.uuid4().hex[:16]
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.claims = signer.claims
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        self.jwk = {**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def mint(self, **claims: Any) -> str:
        return jwt.encode(self.claims(**claims), self.key, "RS256", headers={"kid": self.kid})


def _assert_refused(response: httpx.Response, body: dict[str, str]) -> None:
    """A 401 of the plugin: DRF's body, the Bearer challenge, never cached, a request id."""
    assert response.status_code == 401, response.text
    assert response.json() == body
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    assert response.headers["cache-control"] == "no-store"
    assert 0 < len(response.headers["x-request-id"]) <= 128


def _assert_token_not_valid(response: httpx.Response, detail: str = NOT_VALID) -> None:
    _assert_refused(response, {"detail": detail, "code": "token_not_valid"})


def _seen_by_service(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    headers: dict[str, str] = response.json()["headers"]
    return headers


def _signed(signer: TestSigner, claims: dict[str, Any]) -> str:
    """``claims`` signed with the key as they are (PyJWT refuses to encode a null ``iss``)."""
    header = {"alg": "EdDSA", "typ": "JWT", "kid": signer.kid}
    unsigned = forge_token(header, claims).rstrip(".")
    return f"{unsigned}.{b64url(signer.private_key.sign(unsigned.encode()))}"


def _eventually(condition: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


# ------------------------------------------------------------------ what passes, and how


def test_a_valid_token_reaches_the_service_with_who_it_is(
    token_gateway: TokenGateway, signer: TestSigner
) -> None:
    token = signer.mint(user_id=42, tenant="public")
    for path in (PATIENTS, "/api/tenants/", "/api/auth/me/"):
        seen = _seen_by_service(token_gateway.get(path, token))
        assert seen["x-user-id"] == "42", path
        assert seen["x-tenant"] == "public", path
        assert seen["authorization"] == f"Bearer {token}"  # services verify it again
        assert len(seen["x-request-id"]) == 32


def test_client_sent_identity_headers_never_reach_the_service(
    token_gateway: TokenGateway, signer: TestSigner
) -> None:
    spoofed = {"X-User-Id": "1", "X-Tenant": "elsewhere", "X_Tenant": "elsewhere"}
    seen = _seen_by_service(token_gateway.get(PATIENTS, signer.mint(user_id=7), **spoofed))
    assert seen["x-user-id"] == "7"
    assert seen["x-tenant"] == "public"
    assert "x_tenant" not in seen


def test_a_clients_request_id_is_kept_and_an_unusable_one_replaced(
    token_gateway: TokenGateway, signer: TestSigner
) -> None:
    kept = "client-chosen-id-1"
    seen = _seen_by_service(token_gateway.get(PATIENTS, signer.mint(), **{"X-Request-ID": kept}))
    assert seen["x-request-id"] == kept
    refused = token_gateway.get(PATIENTS, None, **{"X-Request-ID": kept})
    assert refused.headers["x-request-id"] == kept
    for unusable in ("x" * 129, "has space", "tab\there"):
        seen = _seen_by_service(
            token_gateway.get(PATIENTS, signer.mint(), **{"X-Request-ID": unusable})
        )
        replaced = seen["x-request-id"]
        assert replaced != unusable
        assert len(replaced) == 32
        assert int(replaced, 16) >= 0


def test_a_head_request_passes_like_a_get(token_gateway: TokenGateway, signer: TestSigner) -> None:
    response = httpx.head(f"{token_gateway.url}{PATIENTS}", headers=signer.auth_header())
    assert response.status_code == 200
    assert httpx.head(f"{token_gateway.url}{PATIENTS}").status_code == 401


# ---------------------------------------------------------------------- what is refused


def test_no_token_is_refused_with_drf_words(token_gateway: TokenGateway) -> None:
    expected = {"detail": "Authentication credentials were not provided."}
    _assert_refused(token_gateway.get(PATIENTS), expected)
    _assert_refused(token_gateway.get(PATIENTS, Authorization="Basic cm9vdDpyb290"), expected)
    _assert_refused(token_gateway.get(PATIENTS, Authorization="Bearer"), expected)
    _assert_refused(token_gateway.get(PATIENTS, Authorization="Token abc.def.ghi"), expected)


@pytest.mark.parametrize(
    "token", ["garbage", "a.b.c", "eyJhbGciOiJFZERTQSJ9.e30.AAAA", "a.b.c.d", "..", "e30.e30.e30"]
)
def test_a_garbage_token_is_refused(token_gateway: TokenGateway, token: str) -> None:
    _assert_token_not_valid(token_gateway.get(PATIENTS, token))


def test_an_expired_token_is_refused(token_gateway: TokenGateway, signer: TestSigner) -> None:
    _assert_token_not_valid(
        token_gateway.get(PATIENTS, signer.mint(lifetime=-30)), "Token is expired"
    )


def test_a_refresh_token_is_not_an_access_token(
    token_gateway: TokenGateway, signer: TestSigner
) -> None:
    response = token_gateway.get(PATIENTS, signer.mint(token_type="refresh"))
    _assert_token_not_valid(response, "Token has wrong type")


def test_a_token_signed_by_another_key_under_a_trusted_kid_is_refused(
    token_gateway: TokenGateway, signer: TestSigner
) -> None:
    _assert_token_not_valid(token_gateway.get(PATIENTS, TestSigner(kid=signer.kid).mint()))


def test_a_token_under_an_unknown_kid_is_refused(token_gateway: TokenGateway) -> None:
    _assert_token_not_valid(token_gateway.get(PATIENTS, TestSigner().mint()))


@pytest.mark.parametrize("with_kid", [True, False])
def test_alg_none_is_refused(
    token_gateway: TokenGateway, signer: TestSigner, with_kid: bool
) -> None:
    header = {"alg": "none", "typ": "JWT", **({"kid": signer.kid} if with_kid else {})}
    _assert_token_not_valid(token_gateway.get(PATIENTS, forge_token(header, signer.claims())))


@pytest.mark.parametrize("encoding", ["pem", "raw", "jwk_x"])
def test_hs256_signed_with_the_public_key_is_refused(
    token_gateway: TokenGateway, signer: TestSigner, encoding: str
) -> None:
    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    secret = signer.public_key_encodings[encoding]
    token = hs256_token(header, signer.claims(is_superuser=True), secret)
    _assert_token_not_valid(token_gateway.get(PATIENTS, token))


def test_edited_claims_are_refused(token_gateway: TokenGateway, signer: TestSigner) -> None:
    tampered = with_claims(signer.mint(user_id=7), sub="1", user_id=1, is_superuser=True)
    _assert_token_not_valid(token_gateway.get(PATIENTS, tampered))
    retenanted = with_claims(signer.mint(), tenant="elsewhere")
    _assert_token_not_valid(token_gateway.get(PATIENTS, retenanted))


@pytest.mark.parametrize("claim", ["exp", "iat", "jti", "sub", "tenant", "token_type", "iss"])
def test_a_token_without_a_required_claim_is_refused(
    token_gateway: TokenGateway, signer: TestSigner, claim: str
) -> None:
    claims = signer.claims()
    for value in (None, "drop"):
        if value is None:
            claims[claim] = None  # a null counts as missing, as in PyJWT
        else:
            del claims[claim]
        _assert_token_not_valid(token_gateway.get(PATIENTS, _signed(signer, claims)))


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "someone-else"},
        {"sub": "not-a-number"},
        {"sub": 42},  # a number: PyJWT wants the subject as a string
        {"jti": 5},
        {"tenant": ["public"]},
        {"iat": int(time.time()) + 600},  # issued in the future
        {"nbf": int(time.time()) + 600},  # not valid yet
        {"exp": "tomorrow"},
    ],
)
def test_a_token_with_a_malformed_claim_is_refused(
    token_gateway: TokenGateway, signer: TestSigner, changes: dict[str, Any]
) -> None:
    _assert_token_not_valid(
        token_gateway.get(PATIENTS, signer.sign({**signer.claims(), **changes}))
    )


def test_a_token_with_a_critical_header_extension_is_refused(
    token_gateway: TokenGateway, signer: TestSigner
) -> None:
    token = signer.sign(signer.claims(), headers={"crit": ["exp"]})
    _assert_token_not_valid(token_gateway.get(PATIENTS, token))


# ------------------------------------------------------------------------------- keys


def test_every_key_of_the_jwks_verifies_and_the_algorithm_comes_from_the_key(
    start_token_gateway: GatewayFactory, signer: TestSigner
) -> None:
    """Current and previous keys, Ed25519 and RSA: each verifies its own tokens only."""
    previous = TestSigner()
    rsa_signer = RsaSigner(signer)
    auth = AuthStandIn(signer, previous)
    auth.publish(rsa_signer.jwk)
    with start_token_gateway(auth=auth) as gateway:
        for token in (signer.mint(user_id=1), previous.mint(user_id=2), rsa_signer.mint(user_id=3)):
            assert gateway.get(PATIENTS, token).status_code == 200
        # An Ed25519 signature presented as RS256 under the RSA key's kid, and the reverse.
        ed_as_rsa = TestSigner(kid=rsa_signer.kid).mint()
        _assert_token_not_valid(gateway.get(PATIENTS, ed_as_rsa))
        rsa_as_ed = jwt.encode(
            signer.claims(), rsa_signer.key, "RS256", headers={"kid": signer.kid}
        )
        _assert_token_not_valid(gateway.get(PATIENTS, rsa_as_ed))
        # HS256 with the RSA public key as the secret (the classic confusion).
        secret = rsa_signer.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        confused = hs256_token({"alg": "HS256", "kid": rsa_signer.kid}, signer.claims(), secret)
        _assert_token_not_valid(gateway.get(PATIENTS, confused))


def test_a_rotated_key_is_fetched_when_a_token_names_it(
    start_token_gateway: GatewayFactory, signer: TestSigner
) -> None:
    with start_token_gateway() as gateway:
        rotated = TestSigner()
        _assert_token_not_valid(gateway.get(PATIENTS, rotated.mint()))  # not published yet
        gateway.auth.publish(*rotated.jwks["keys"])
        # Refetches happen at most once per JWKS_REFETCH_INTERVAL (1 s).
        _eventually(
            lambda: gateway.get(PATIENTS, rotated.mint()).status_code == 200,
            5,
            "the new key was never fetched",
        )
        assert gateway.get(PATIENTS, signer.mint()).status_code == 200  # the old one still


def test_a_flood_of_unknown_kids_fetches_the_jwks_at_most_once_per_interval(
    start_token_gateway: GatewayFactory,
) -> None:
    with start_token_gateway(env={"JWKS_REFETCH_INTERVAL": "30"}) as gateway:
        before = gateway.auth.fetches
        for _ in range(20):
            _assert_token_not_valid(gateway.get(PATIENTS, TestSigner().mint()))
        assert gateway.auth.fetches - before <= 1


def test_keys_held_keep_verifying_when_auth_goes_down(
    start_token_gateway: GatewayFactory, signer: TestSigner
) -> None:
    auth_port = free_port()
    auth = AuthStandIn(signer)
    with start_token_gateway(
        auth=auth, auth_port=auth_port, serve_auth=False, wait_for_keys=False
    ) as gateway:
        with serve(auth.app, port=auth_port):
            gateway.wait_for_keys()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{gateway.auth_url}/api/auth/jwks/", timeout=2)
        # A token never seen before, and an unknown kid (which tries auth and fails).
        assert gateway.get(PATIENTS, signer.mint(user_id=9)).status_code == 200
        _assert_token_not_valid(gateway.get(PATIENTS, TestSigner().mint()))
        assert gateway.get(PATIENTS, signer.mint(user_id=10)).status_code == 200


def test_until_auth_answers_a_token_gets_503_and_the_gateway_is_not_ready(
    start_token_gateway: GatewayFactory, signer: TestSigner
) -> None:
    auth_port = free_port()
    auth = AuthStandIn(signer)
    with start_token_gateway(
        auth=auth, auth_port=auth_port, serve_auth=False, wait_for_keys=False
    ) as gateway:
        # A token that may well be valid is not called invalid: 503, retry in a second.
        response = gateway.get(PATIENTS, signer.mint())
        assert response.status_code == 503
        assert response.json() == {
            "detail": "Signing keys not loaded from auth yet, try again shortly."
        }
        assert response.headers["retry-after"] == "1"
        assert response.headers["cache-control"] == "no-store"
        assert len(response.headers["x-request-id"]) == 32
        # Rejected before any key is needed: still a 401.
        _assert_token_not_valid(gateway.get(PATIENTS, "garbage"))
        health = httpx.get(f"{gateway.url}/health/", timeout=10)
        assert health.status_code == 503
        assert health.json()["status"] == "fail"
        assert health.json()["checks"]["jwks"] == {
            "status": "fail",
            "output": "Signing keys not loaded from auth yet, try again shortly.",
        }
        assert gateway.counters()[("error", "keys_unavailable")] >= 1
        metrics = httpx.get(gateway.processes.token_check_metrics_url, timeout=10).text
        assert "gateway_token_check_signing_keys 0" in metrics
        with serve(auth.app, port=auth_port):
            # Fetched again every second until auth answers.
            _eventually(
                lambda: gateway.get(PATIENTS, signer.mint()).status_code == 200,
                5,
                "the keys were never loaded",
            )
            # The edge's aggregate (cached a second) sees auth back too.
            _eventually(
                lambda: httpx.get(f"{gateway.url}/health/", timeout=10).status_code == 200,
                5,
                "the gateway never turned ready",
            )
            health = httpx.get(f"{gateway.url}/health/", timeout=10)
            assert health.json()["checks"]["jwks"] == {"status": "pass"}


# ---------------------------------------------------------------------------- tenants


def test_a_token_of_an_unknown_tenant_is_refused(
    token_gateway: TokenGateway, signer: TestSigner
) -> None:
    response = token_gateway.get(PATIENTS, signer.mint(tenant="nosuchtenant"))
    _assert_token_not_valid(response, "Token's tenant is no longer active.")


def test_a_deleted_tenants_tokens_stop_working_within_the_cache_lifetime(
    start_token_gateway: GatewayFactory, signer: TestSigner
) -> None:
    tenants = TenantsStandIn(statuses={"public": True, "doomed": True})
    with start_token_gateway(env={"TENANT_CACHE_SECONDS": "1"}, tenants=tenants) as gateway:
        token = signer.mint(tenant="doomed")
        assert gateway.get(PATIENTS, token).status_code == 200
        tenants.statuses["doomed"] = False  # deleted
        deleted_at = time.monotonic()
        _eventually(
            lambda: gateway.get(PATIENTS, token).status_code == 401, 3, "token still accepted"
        )
        assert time.monotonic() - deleted_at < 1.5  # the cache lifetime, and a refresh's trip
        _assert_token_not_valid(gateway.get(PATIENTS, token), "Token's tenant is no longer active.")


def test_the_tenant_registry_unreachable_without_an_answer_is_a_503(
    start_token_gateway: GatewayFactory, signer: TestSigner
) -> None:
    with start_token_gateway(env={"TENANTS_URL": f"http://127.0.0.1:{free_port()}"}) as gateway:
        response = gateway.get(PATIENTS, signer.mint())
    assert response.status_code == 503
    assert response.json() == {"detail": "Tenant registry unavailable, try again shortly."}
    assert response.headers["cache-control"] == "no-store"


def test_stale_answers_serve_while_the_registry_is_down_then_503(
    start_token_gateway: GatewayFactory, signer: TestSigner
) -> None:
    # The contract's bound is one minute; shortened here (a setting the route table never
    # changes) so the test need not wait for it, yet long enough for a loaded machine.
    bound = 4.0
    tenants = TenantsStandIn()
    with start_token_gateway(
        env={"TENANT_CACHE_SECONDS": "0.4"},
        tenants=tenants,
        plugin_settings={"tenantMaxStaleSeconds": bound},
    ) as gateway:
        known = signer.mint()  # verified once, then served from the cache
        assert gateway.get(PATIENTS, known).status_code == 200
        tenants.failing = True
        failing_since = time.monotonic()  # no answer can be fresher than this
        time.sleep(0.6)  # past the cache lifetime: the gateway asks, fails, falls back
        assert gateway.get(PATIENTS, signer.mint()).status_code == 200  # within the bound
        assert gateway.get(PATIENTS, known).status_code == 200
        # A tenant never seen cannot be vouched for.
        never_seen = gateway.get(PATIENTS, signer.mint(tenant="neverseen"))
        assert never_seen.status_code == 503
        time.sleep(max(0.0, failing_since + bound + 0.3 - time.monotonic()))
        # Past the bound with the registry still down: a deleted tenant's tokens could be
        # passing, so the gateway refuses to vouch (503), never answers "active".
        for token in (signer.mint(), known):
            response = gateway.get(PATIENTS, token)
            assert response.status_code == 503
            assert response.json() == {"detail": "Tenant registry unavailable, try again shortly."}
        assert gateway.counters()[("error", "tenants_unavailable")] >= 3
        tenants.failing = False
        _eventually(
            lambda: gateway.get(PATIENTS, signer.mint()).status_code == 200, 3, "no recovery"
        )


def test_tenants_known_at_the_last_refresh_need_no_single_lookup(
    start_token_gateway: GatewayFactory, signer: TestSigner
) -> None:
    live = [f"t{uuid.uuid4().hex[:8]}" for _ in range(5)]
    tenants = TenantsStandIn(statuses={"public": True, "gone": False, **dict.fromkeys(live, True)})
    with start_token_gateway(tenants=tenants) as gateway:
        # The plugin fetches every tenant's status as it starts (then every TTL / 2).
        _eventually(lambda: tenants.status_calls >= 1, 5, "no status refresh")
        for schema in live:
            assert gateway.get(PATIENTS, signer.mint(tenant=schema)).status_code == 200
        _assert_token_not_valid(
            gateway.get(PATIENTS, signer.mint(tenant="gone")), "Token's tenant is no longer active."
        )
        assert tenants.resolve_calls == {}
        # A tenant created since the refresh is looked up on its own, once, however many
        # requests ask at the same moment.
        tenants.statuses["newcomer"] = True
        token = signer.mint(tenant="newcomer")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: gateway.get(PATIENTS, token).status_code, range(8)))
        assert statuses == [200] * 8
        assert tenants.resolve_calls == {"newcomer": 1}


def test_the_internal_token_goes_with_every_registry_request_when_it_is_set(
    start_token_gateway: GatewayFactory, signer: TestSigner
) -> None:
    secret = uuid.uuid4().hex
    tenants = TenantsStandIn()
    with start_token_gateway(env={"DENTIAPRO_INTERNAL_TOKEN": secret}, tenants=tenants) as gateway:
        _eventually(lambda: tenants.status_calls >= 1, 5, "no status refresh")
        assert gateway.get(PATIENTS, signer.mint(tenant="unknown")).status_code == 401
    assert tenants.resolve_calls == {"unknown": 1}
    assert tenants.internal_tokens
    assert set(tenants.internal_tokens) == {secret}


def test_the_internal_token_may_come_from_a_file(
    start_token_gateway: GatewayFactory, signer: TestSigner, tmp_path: Any
) -> None:
    secret = uuid.uuid4().hex
    (tmp_path / "internal-token").write_text(f"{secret}\n")
    tenants = TenantsStandIn()
    env = {
        "DENTIAPRO_INTERNAL_TOKEN": "",
        "DENTIAPRO_INTERNAL_TOKEN_FILE": str(tmp_path / "internal-token"),
    }
    with start_token_gateway(env=env, tenants=tenants) as gateway:
        assert gateway.get(PATIENTS, signer.mint(tenant="unknown")).status_code == 401
    assert tenants.internal_tokens
    assert set(tenants.internal_tokens) == {secret}


# ------------------------------------------------------------- one state per process


def test_every_router_shares_one_key_set_and_reloads_keep_it(
    start_token_gateway: GatewayFactory, signer: TestSigner
) -> None:
    """Traefik builds the middleware once per router and again on every reload of the route
    table; the keys (and caches) are the process's, fetched once."""
    with start_token_gateway(plugin_settings={}) as gateway:
        for path in (PATIENTS, "/api/cabinets/", "/api/tenants/", "/api/auth/users/"):
            assert gateway.get(path, signer.mint()).status_code == 200, path
        assert gateway.auth.fetches == 1
        dynamic = gateway.processes.traefik_dynamic_dir
        (dynamic / "reload.yml").write_text(
            "http:\n  routers:\n    reloaded:\n      entryPoints: [web]\n"
            "      rule: Path(`/api/reloaded`)\n      middlewares: [protected]\n"
            "      service: tenants\n"
        )
        _eventually(
            lambda: gateway.get("/api/reloaded", signer.mint()).status_code == 200,
            10,
            "the new route table was not loaded",
        )
        assert gateway.get(PATIENTS, signer.mint()).status_code == 200
        assert gateway.auth.fetches == 1


def test_a_changed_configuration_gets_a_state_of_its_own_and_the_old_one_stops(
    start_token_gateway: GatewayFactory, signer: TestSigner
) -> None:
    tenants = TenantsStandIn()
    with start_token_gateway(
        env={"TENANT_CACHE_SECONDS": "0.4"}, tenants=tenants, plugin_settings={}
    ) as gateway:
        _eventually(lambda: tenants.status_calls >= 3, 5, "no refresh every 0.2 s")
        middlewares = gateway.processes.traefik_dynamic_dir / "middlewares.yml"
        text = middlewares.read_text()
        templated = '\'{{ env "TENANT_CACHE_SECONDS" | default "30" }}\''
        assert templated in text
        middlewares.write_text(text.replace(templated, '"20"'))
        # The new settings' state fetches the keys for itself ...
        _eventually(lambda: gateway.auth.fetches == 2, 10, "no state for the new settings")
        assert gateway.get(PATIENTS, signer.mint()).status_code == 200
        # ... and the old one's refresh every 0.2 s has stopped (the new one's is every 10 s).
        time.sleep(0.5)
        calls = tenants.status_calls
        time.sleep(1.0)
        assert tenants.status_calls - calls <= 1


# ----------------------------------------------------------------- counters and health


def test_checks_are_counted_by_result_and_reason_on_the_internal_entry_point(
    token_gateway: TokenGateway, signer: TestSigner
) -> None:
    before = token_gateway.counters()
    token_gateway.get(PATIENTS, signer.mint())
    token_gateway.get(PATIENTS)
    token_gateway.get(PATIENTS, "garbage")
    token_gateway.get(PATIENTS, signer.mint(lifetime=-30))
    token_gateway.get(PATIENTS, signer.mint(token_type="refresh"))
    token_gateway.get(PATIENTS, signer.mint(tenant="nosuchtenant"))
    after = token_gateway.counters()
    assert set(after) == {
        ("ok", "valid"),
        ("denied", "missing"),
        ("denied", "expired"),
        ("denied", "wrong_type"),
        ("denied", "invalid"),
        ("denied", "inactive_tenant"),
        ("error", "keys_unavailable"),
        ("error", "tenants_unavailable"),
    }
    for key in [
        ("ok", "valid"),
        ("denied", "missing"),
        ("denied", "invalid"),
        ("denied", "expired"),
        ("denied", "wrong_type"),
        ("denied", "inactive_tenant"),
    ]:
        assert after[key] - before.get(key, 0) == 1, key
    metrics = httpx.get(token_gateway.processes.token_check_metrics_url, timeout=10).text
    assert "gateway_token_check_signing_keys 1" in metrics
    # Not on the gateway's public port: /metrics/ there is Traefik's own.
    public = httpx.get(f"{token_gateway.url}/metrics/", timeout=10).text
    assert "gateway_token_checks_total" not in public


def test_gateway_health_is_the_edges_aggregate_with_the_gateways_key_check(
    token_gateway: TokenGateway,
) -> None:
    response = httpx.get(f"{token_gateway.url}/health/", timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "pass"
    assert set(body["services"]) == {"auth", "clinic", "tenants"}
    assert body["checks"] == {"jwks": {"status": "pass"}}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert int(response.headers["content-length"]) == len(response.content)
    assert httpx.head(f"{token_gateway.url}/health/", timeout=10).status_code == 200
