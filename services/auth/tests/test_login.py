"""POST /api/auth/login/: credentials, simplejwt's words, throttling of failures."""

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import jwt
import pytest
from auth.models import Role, User
from sqlmodel import Session, select

StartAuth = Callable[..., httpx.Client]
MakeUser = Callable[..., User]
NO_ACCOUNT = {"detail": "No active account found with the given credentials"}


def _login(
    client: httpx.Client, username: str, password: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {"username": username, "password": password}
    return client.post("/api/auth/login/", json=body, headers=headers)


def _metric(client: httpx.Client, line_prefix: str) -> float:
    for line in client.get("/metrics/").text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_login_returns_an_access_and_a_refresh_token_with_the_documented_claims(
    client: httpx.Client, make_user: MakeUser, password: str
) -> None:
    user = make_user("dana", tenant="public", role=Role.ADMIN)

    response = _login(client, "dana", password)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh"}
    header = jwt.get_unverified_header(body["access"])
    assert header["alg"] == "EdDSA"
    assert header["kid"] == client.get("/api/auth/jwks/").json()["keys"][0]["kid"]
    access = jwt.decode(body["access"], options={"verify_signature": False})
    assert set(access) == {
        "sub", "user_id", "username", "tenant", "is_superuser", "role",
        "token_type", "jti", "iat", "exp", "iss",
    }  # fmt: skip
    assert access["sub"] == str(user.id)
    assert access["user_id"] == user.id
    assert access["username"] == "dana"
    assert access["tenant"] == "public"
    assert access["is_superuser"] is False
    assert access["role"] == "admin"
    assert access["token_type"] == "access"
    assert access["iss"] == "dentiapro-auth"
    assert access["exp"] - access["iat"] == 300
    refresh = jwt.decode(body["refresh"], options={"verify_signature": False})
    assert refresh["token_type"] == "refresh"
    assert refresh["exp"] - refresh["iat"] == 86400
    assert refresh["jti"] != access["jti"]


def test_token_lifetimes_follow_the_settings(
    start_auth: StartAuth, make_user: MakeUser, password: str
) -> None:
    client = start_auth(access_token_lifetime=60, refresh_token_lifetime=600)
    make_user("eve")

    body = _login(client, "eve", password).json()

    access = jwt.decode(body["access"], options={"verify_signature": False})
    refresh = jwt.decode(body["refresh"], options={"verify_signature": False})
    assert access["exp"] - access["iat"] == 60
    assert refresh["exp"] - refresh["iat"] == 600


def test_username_is_matched_case_insensitively(
    client: httpx.Client, make_user: MakeUser, password: str
) -> None:
    make_user("Frank")

    assert _login(client, "fRANK", password).status_code == 200


def test_wrong_password_is_a_401_in_simplejwt_words(
    client: httpx.Client, make_user: MakeUser
) -> None:
    make_user("gina")

    response = _login(client, "gina", "not-her-password")

    assert response.status_code == 401
    assert response.json() == NO_ACCOUNT
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_user_gets_the_same_401(client: httpx.Client) -> None:
    response = _login(client, "nobody", "whatever-password")

    assert response.status_code == 401
    assert response.json() == NO_ACCOUNT
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_inactive_user_with_the_right_password_gets_the_same_401(
    client: httpx.Client, make_user: MakeUser, password: str
) -> None:
    make_user("hank", is_active=False)

    response = _login(client, "hank", password)

    assert response.status_code == 401
    assert response.json() == NO_ACCOUNT


def test_missing_or_blank_fields_are_a_400(client: httpx.Client) -> None:
    required = ["This field is required."]
    cases = [
        ({"password": "x"}, {"username": required}),
        ({"username": "x"}, {"password": required}),
        ({}, {"username": required, "password": required}),
        ({"username": "", "password": "x"}, {"username": ["This field may not be blank."]}),
        ({"username": "x", "password": ""}, {"password": ["This field may not be blank."]}),
    ]
    for body, errors in cases:
        response = client.post("/api/auth/login/", json=body)

        assert response.status_code == 400, body
        assert response.json() == errors, body


def test_a_null_character_is_a_400_as_in_drf(client: httpx.Client) -> None:
    # PostgreSQL refuses NUL in text: it must not get as far as a query (a 500).
    for body in (
        {"username": "adm\x00in", "password": "whatever-pass-1"},
        {"username": "admin", "password": "what\x00ever"},
    ):
        response = client.post("/api/auth/login/", json=body)

        assert response.status_code == 400, response.text
        (field,) = response.json()
        assert response.json()[field] == ["Null characters are not allowed."]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/auth/login/", '{"username": "\\ud800", "password": "x"}', "username"),
        ("/api/auth/login/", '{"username": "admin", "password": "\\udfff"}', "password"),
        ("/api/auth/refresh/", '{"refresh": "\\ud800"}', "refresh"),
        (
            "/api/auth/register/",
            '{"username": "surr", "email": "s@example.com", "password": "bicuspid-enamel-2026",'
            ' "invitation": "\\ud800"}',
            "invitation",
        ),
        (
            "/api/auth/register/",
            '{"username": "surr", "email": "s@example.com", "password": "bicuspid\\ud800enamel",'
            ' "invitation": "x"}',
            "password",
        ),
    ],
)
def test_half_a_surrogate_pair_is_a_400_on_its_field(
    client: httpx.Client, path: str, body: str, field: str
) -> None:
    # JSON's "\ud800" decodes to a string with no UTF-8 form: the database driver and the
    # password hasher would fail on it (a 500, before any login was needed).
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 400, response.text
    assert response.json() == {
        field: ["Unpaired surrogate characters (\\ud800-\\udfff) are not allowed."]
    }


def test_a_body_that_is_not_an_object_is_a_400(client: httpx.Client) -> None:
    response = client.post("/api/auth/login/", json=["user", "pass"])

    assert response.status_code == 400


def test_unknown_user_costs_the_same_argon2_work_as_a_known_one(
    start_auth: StartAuth, make_user: MakeUser, password: str
) -> None:
    # A real Argon2 cost here: with the cheapest hashing the difference drowns in noise.
    client = start_auth(argon2_time_cost=1, argon2_memory_cost=32768, argon2_parallelism=1)
    client.post("/api/auth/register/", json={
        "username": "ivan", "password": password, "email": "ivan@example.com"
    }, headers={"X-Tenant": "public"})  # fmt: skip

    def timed(username: str) -> float:
        started = time.perf_counter()
        assert _login(client, username, "wrong-password-123").status_code == 401
        return time.perf_counter() - started

    timed("nobody")  # warm up the connection pool
    # Interleaved, so a burst of load on a shared machine slows both kinds alike.
    known: list[float] = []
    unknown: list[float] = []
    for _ in range(7):
        known.append(timed("ivan"))
        unknown.append(timed("nobody"))
    assert statistics.median(unknown) > statistics.median(known) * 0.5, (known, unknown)


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_login_burst_hashes_at_most_max_concurrent_at_once(
    start_auth: StartAuth, make_user: MakeUser, password: str
) -> None:
    """Each hash allocates its memory cost: twelve logins at once must not hold twelve."""
    memory_mib = 32
    client = start_auth(
        argon2_time_cost=1,
        argon2_memory_cost=memory_mib * 1024,
        argon2_parallelism=1,
        argon2_max_concurrent=1,
        # Attempts in flight count against the limit: twelve at once must all be judged.
        login_failures_per_username=20,
    )
    make_user("burst")  # hashed cheaply; the login verifies, then rehashes at the real cost
    assert _login(client, "burst", password).status_code == 200
    baseline = _rss_mib()
    peak = baseline
    with ThreadPoolExecutor(12) as pool:
        logins = [pool.submit(_login, client, "burst", password) for _ in range(12)]
        while not all(login.done() for login in logins):
            peak = max(peak, _rss_mib())
            time.sleep(0.005)
        assert {login.result().status_code for login in logins} == {200}
    # One hash at a time: one memory cost on top (plus slack), not twelve (384 MiB).
    assert peak - baseline < 2.5 * memory_mib, (baseline, peak)


def test_passwords_are_stored_as_argon2id_and_rehashed_when_the_cost_changes(
    start_auth: StartAuth, db: Session, password: str, join: Callable[..., httpx.Response]
) -> None:
    cheap = start_auth()
    join(cheap, "rae")  # registered with an invitation: active at once
    stored = db.exec(select(User.password_hash).where(User.username == "rae")).one()
    assert stored.startswith("$argon2id$")
    assert "m=1024,t=1,p=1" in stored

    dearer = start_auth(argon2_time_cost=2, argon2_memory_cost=2048)
    assert _login(dearer, "rae", password).status_code == 200

    rehashed = db.exec(select(User.password_hash).where(User.username == "rae")).one()
    assert "m=2048,t=2,p=1" in rehashed
    assert _login(dearer, "rae", password).status_code == 200


def test_logins_are_counted_by_result(
    client: httpx.Client, make_user: MakeUser, password: str
) -> None:
    make_user("judy")
    success = _metric(client, 'auth_logins_total{result="success"}')
    failed = _metric(client, 'auth_logins_total{result="bad_credentials"}')
    issued = _metric(client, 'auth_tokens_issued_total{token_type="access"}')

    _login(client, "judy", password)
    _login(client, "judy", "wrong-password-1")

    assert _metric(client, 'auth_logins_total{result="success"}') == success + 1
    assert _metric(client, 'auth_logins_total{result="bad_credentials"}') == failed + 1
    assert _metric(client, 'auth_tokens_issued_total{token_type="access"}') == issued + 1


# ---- throttling ---------------------------------------------------------------------------


def test_ten_failures_lock_a_username_at_the_default_limits(
    client: httpx.Client, make_user: MakeUser, password: str
) -> None:
    make_user("kim")
    for attempt in range(10):
        assert _login(client, "kim", f"wrong-{attempt}-pass").status_code == 401

    response = _login(client, "KIM", password)

    assert response.status_code == 429
    assert response.json() == {
        "detail": f"Request was throttled. Expected available in {response.headers['Retry-After']} seconds."
    }
    # Ten failures took a moment: the oldest leaves the window a little before 300 s.
    assert 240 <= int(response.headers["Retry-After"]) <= 300


def test_throttle_lifts_when_the_window_passes(
    start_auth: StartAuth, make_user: MakeUser, password: str
) -> None:
    client = start_auth(login_failure_window=4, login_failures_per_username=3)
    make_user("leo")
    for _ in range(3):
        assert _login(client, "leo", "wrong-password-9").status_code == 401

    throttled = _login(client, "leo", password)
    assert throttled.status_code == 429
    retry_after = int(throttled.headers["Retry-After"])
    assert 1 <= retry_after <= 4
    time.sleep(retry_after + 0.2)

    assert _login(client, "leo", password).status_code == 200


def test_successful_logins_do_not_count_towards_the_limit(
    start_auth: StartAuth, make_user: MakeUser, password: str
) -> None:
    client = start_auth(login_failures_per_username=3)
    make_user("mia")

    for _ in range(5):
        assert _login(client, "mia", password).status_code == 200
    _login(client, "mia", "wrong-password-9")

    assert _login(client, "mia", password).status_code == 200


def test_failures_from_one_address_are_limited_across_usernames(
    start_auth: StartAuth, make_user: MakeUser, password: str
) -> None:
    client = start_auth(login_failures_per_address=3, login_failures_per_username=100)
    make_user("nina")
    attacker = {"X-Forwarded-For": "203.0.113.7"}
    for index in range(3):
        assert _login(client, f"guess{index}", "x-password", headers=attacker).status_code == 401

    blocked = _login(client, "nina", password, headers=attacker)
    elsewhere = _login(client, "nina", password, headers={"X-Forwarded-For": "198.51.100.2"})

    assert blocked.status_code == 429
    assert "Retry-After" in blocked.headers
    assert elsewhere.status_code == 200


def test_a_client_written_forwarded_for_entry_does_not_escape_the_address_limit(
    start_auth: StartAuth, make_user: MakeUser, password: str
) -> None:
    """The gateway (loopback here) appends the address it saw; anything to its left is the
    client's own writing and changes nothing."""
    client = start_auth(login_failures_per_address=3, login_failures_per_username=100)
    make_user("nina")
    for index in range(3):
        spoofed = {"X-Forwarded-For": f"192.0.2.{index}, 203.0.113.7"}
        assert _login(client, f"guess{index}", "x-password", headers=spoofed).status_code == 401

    blocked = _login(
        client, "nina", password, headers={"X-Forwarded-For": "192.0.2.99, 203.0.113.7"}
    )

    assert blocked.status_code == 429


def test_an_ipv6_client_is_limited_by_its_64(
    start_auth: StartAuth, make_user: MakeUser, password: str
) -> None:
    client = start_auth(login_failures_per_address=3, login_failures_per_username=100)
    make_user("ines")
    for index in range(3):
        hop = {"X-Forwarded-For": f"2001:db8:5:6::{index + 1:x}"}
        assert _login(client, f"guess{index}", "x-password", headers=hop).status_code == 401

    same_64 = _login(client, "ines", password, headers={"X-Forwarded-For": "2001:db8:5:6:ffff::1"})
    next_64 = _login(client, "ines", password, headers={"X-Forwarded-For": "2001:db8:5:7::1"})

    assert same_64.status_code == 429
    assert next_64.status_code == 200


def test_forwarded_for_is_ignored_from_a_peer_that_is_no_trusted_proxy(
    start_auth: StartAuth, make_user: MakeUser, password: str
) -> None:
    # Auth reached directly, not through the gateway: its peer is the client.
    client = start_auth(
        login_failures_per_address=3, login_failures_per_username=100, trusted_proxies="10.9.9.9"
    )
    make_user("omid")
    for index in range(3):
        hop = {"X-Forwarded-For": f"198.51.100.{index}"}
        assert _login(client, f"guess{index}", "x-password", headers=hop).status_code == 401

    assert _login(client, "omid", password).status_code == 429


def test_a_parallel_burst_gets_no_more_password_checks_than_the_limit(
    start_auth: StartAuth, make_user: MakeUser, password: str
) -> None:
    # All sent at once: were attempts judged before the earlier ones were recorded, most of
    # the burst would reach the password check (each one a guess).
    client = start_auth(login_failures_per_username=3)
    make_user("quinn")
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(
            pool.map(lambda n: _login(client, "quinn", f"guess-{n}-pass").status_code, range(16))
        )

    # Attempts still in flight count too, so fewer than three may get as far (never more).
    assert 1 <= statuses.count(401) <= 3
    assert statuses.count(401) + statuses.count(429) == 16


def test_a_refused_attempt_is_not_a_failure(
    start_auth: StartAuth, make_user: MakeUser, password: str
) -> None:
    client = start_auth(login_failure_window=3, login_failures_per_username=2)
    make_user("rhea")
    for _ in range(2):
        assert _login(client, "rhea", "wrong-password-9").status_code == 401
    throttled = _login(client, "rhea", password)
    assert throttled.status_code == 429
    for _ in range(5):  # refused ones must not push the lock further out
        assert _login(client, "rhea", password).status_code == 429
    time.sleep(int(throttled.headers["Retry-After"]) + 0.2)

    assert _login(client, "rhea", password).status_code == 200


def test_throttling_is_shared_by_replicas(
    start_auth: StartAuth, make_user: MakeUser, password: str
) -> None:
    first = start_auth(login_failures_per_username=3)
    second = start_auth(login_failures_per_username=3)
    make_user("omar")
    for replica in (first, second, first):
        assert _login(replica, "omar", "wrong-password-9").status_code == 401

    assert _login(second, "omar", password).status_code == 429


def test_throttled_logins_are_counted(
    start_auth: StartAuth, make_user: MakeUser, password: str
) -> None:
    client = start_auth(login_failures_per_username=1)
    make_user("pia")
    before = _metric(client, 'auth_logins_total{result="throttled"}')
    _login(client, "pia", "wrong-password-9")

    assert _login(client, "pia", password).status_code == 429
    assert _metric(client, 'auth_logins_total{result="throttled"}') == before + 1
