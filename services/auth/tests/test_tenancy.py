"""Tenant resolution through the tenants service: on registration, login and refresh.

The tenants service is the real one, started as a subprocess by the ``tenants`` fixture;
the tests of an unreachable service point the auth server at a port nothing listens on.
"""

import uuid
from collections.abc import Callable
from typing import Any, Protocol

import httpx
import pytest
from auth.models import User

Register = Callable[..., httpx.Response]
Join = Callable[..., httpx.Response]
Login = Callable[..., dict[str, str]]
MakeUser = Callable[..., User]
StartAuth = Callable[..., httpx.Client]


class Registry(Protocol):
    def create(self, prefix: str, domain_url: str | None = None) -> dict[str, Any]: ...
    def delete(self, tenant: dict[str, Any]) -> None: ...


class Tenancy(Protocol):
    """What the ``tenants`` fixture starts: an auth server and the registry it uses."""

    auth: httpx.Client
    registry: Registry


UNAVAILABLE = {"detail": "Tenant registry unavailable, try again shortly."}
NO_ACCOUNT = {"detail": "No active account found with the given credentials"}


def _login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post("/api/auth/login/", json={"username": username, "password": password})


# ---- with the tenants service -------------------------------------------------------------


def test_x_tenant_picks_the_tenant_and_even_its_first_user_waits_as_pending_staff(
    tenants: Callable[..., Tenancy], register: Register
) -> None:
    service = tenants()
    clinic = service.registry.create("clinic_a")["schema_name"]

    first = register(service.auth, "anna", tenant=clinic)
    second = register(service.auth, "bert", tenant=clinic)
    elsewhere = register(service.auth, "carl", tenant="public")

    assert first.status_code == 201
    for response in (first, second):
        body = response.json()
        assert (body["tenant"], body["role"], body["is_active"]) == (clinic, "staff", False)
    assert elsewhere.json()["tenant"] == "public"


def test_unknown_x_tenant_is_a_400_never_a_fallback(
    tenants: Callable[..., Tenancy], register: Register
) -> None:
    service = tenants()
    for name in ["nowhere", "Not A Schema"]:
        response = register(service.auth, "dora", tenant=name)

        assert response.status_code == 400, name
        assert response.json() == {"tenant": [f'Unknown or inactive tenant "{name}".']}


def test_x_tenant_naming_a_deleted_tenant_is_a_400(
    tenants: Callable[..., Tenancy], register: Register
) -> None:
    service = tenants()
    tenant = service.registry.create("clinic_gone")
    service.registry.delete(tenant)

    response = register(service.auth, "emil", tenant=tenant["schema_name"])

    assert response.status_code == 400
    assert response.json() == {"tenant": [f'Unknown or inactive tenant "{tenant["schema_name"]}".']}


def test_host_picks_the_tenant_when_there_is_no_x_tenant(
    tenants: Callable[..., Tenancy], register: Register
) -> None:
    service = tenants()
    domain = f"smile-{uuid.uuid4().hex[:8]}.example.test"
    clinic = service.registry.create("clinic_h", domain_url=domain)["schema_name"]

    response = register(
        service.auth, "fred", tenant=None, headers={"Host": f"{domain.upper()}:8000"}
    )

    assert response.status_code == 201, response.text
    assert response.json()["tenant"] == clinic


def test_unknown_host_falls_back_to_the_default_tenant(
    tenants: Callable[..., Tenancy], register: Register
) -> None:
    service = tenants()

    response = register(service.auth, "gus", tenant=None, headers={"Host": "unknown.example.test"})

    assert response.status_code == 201
    assert response.json()["tenant"] == "public"


def test_users_of_a_deleted_tenant_can_neither_log_in_nor_refresh(
    tenants: Callable[..., Tenancy], register: Register, join: Join, login: Login, password: str
) -> None:
    service = tenants()
    tenant = service.registry.create("clinic_d")
    join(service.auth, "hugo", tenant=tenant["schema_name"])
    refresh = login(service.auth, "hugo")["refresh"]

    service.registry.delete(tenant)

    login_response = _login(service.auth, "hugo", password)
    assert login_response.status_code == 401
    assert login_response.json() == NO_ACCOUNT
    refresh_response = service.auth.post("/api/auth/refresh/", json={"refresh": refresh})
    assert refresh_response.status_code == 401
    assert refresh_response.json()["code"] == "token_not_valid"
    metrics = service.auth.get("/metrics/").text
    assert 'auth_logins_total{result="inactive_tenant"}' in metrics


def test_a_deleted_tenant_is_refused_at_once_whatever_the_tenant_cache_setting(
    tenants: Callable[..., Tenancy], register: Register, join: Join, login: Login, password: str
) -> None:
    """From the moment the DELETE has returned: no login, no refresh, no registration. Auth
    asks the registry each time (TENANT_CACHE_SECONDS is the edge's, not auth's)."""
    service = tenants(tenant_cache_seconds=30)
    tenant = service.registry.create("clinic_c")
    schema = tenant["schema_name"]
    join(service.auth, "ivy", tenant=schema)
    refresh = login(service.auth, "ivy")["refresh"]  # the tenant was active a moment ago

    service.registry.delete(tenant)

    assert _login(service.auth, "ivy", password).status_code == 401
    assert service.auth.post("/api/auth/refresh/", json={"refresh": refresh}).status_code == 401
    assert register(service.auth, "jan", tenant=schema).status_code == 400


def test_auth_presents_the_internal_token_to_the_registry(
    tenants: Callable[..., Tenancy], register: Register, tenants_registry: Any
) -> None:
    probe = httpx.get(
        f"{tenants_registry.url}/internal/tenants/resolve/", params={"schema_name": "public"}
    )
    if probe.status_code not in (401, 403):
        pytest.skip("this tenants service does not require X-Internal-Token yet")
    right = tenants()
    wrong = tenants(internal_token="not-the-internal-token")
    schema = right.registry.create("clinic_t")["schema_name"]

    refused = register(wrong.auth, "tim", tenant=schema)
    accepted = register(right.auth, "tim", tenant=schema)

    assert refused.status_code == 503  # a configuration error, never "unknown tenant"
    assert refused.json() == UNAVAILABLE
    assert accepted.status_code == 201, accepted.text


def test_refresh_is_a_503_while_the_tenants_service_is_unreachable_and_spends_nothing(
    tenants: Callable[..., Tenancy],
    register: Register,
    join: Join,
    login: Login,
    start_auth: StartAuth,
) -> None:
    service = tenants()
    clinic = service.registry.create("clinic_r")["schema_name"]
    join(service.auth, "otto", tenant=clinic)
    refresh = login(service.auth, "otto")["refresh"]
    # A replica on the same database that cannot reach the tenants service.
    cut_off = start_auth()

    refused = cut_off.post("/api/auth/refresh/", json={"refresh": refresh})
    retried = service.auth.post("/api/auth/refresh/", json={"refresh": refresh})

    assert refused.status_code == 503
    assert refused.json() == UNAVAILABLE
    assert retried.status_code == 200


# ---- without it ---------------------------------------------------------------------------


def test_registration_is_a_503_when_the_tenants_service_is_unreachable(
    client: httpx.Client, register: Register
) -> None:
    with_header = register(client, "lou", tenant="clinic_a")
    by_host = register(client, "lou", tenant=None)

    assert with_header.status_code == 503
    assert with_header.json() == UNAVAILABLE
    assert by_host.status_code == 503
    assert by_host.json() == UNAVAILABLE


def test_the_default_tenant_needs_no_tenants_service(
    client: httpx.Client, register: Register, join: Join, login: Login
) -> None:
    join(client, "mo", tenant="public")
    login(client, "mo")


def test_x_tenant_is_ignored_outside_registration(
    client: httpx.Client, make_user: MakeUser, password: str
) -> None:
    make_user("pat")

    response = client.post(
        "/api/auth/login/",
        json={"username": "pat", "password": password},
        headers={"X-Tenant": "clinic_elsewhere"},
    )

    assert response.status_code == 200


def test_login_is_a_503_for_other_tenants_when_it_is_unreachable(
    client: httpx.Client, make_user: MakeUser, password: str
) -> None:
    make_user("nat", tenant="clinic_a")

    # Past the ten-failure limit: the right password while the registry is away is no failure.
    responses = [_login(client, "nat", password) for _ in range(12)]

    assert [response.status_code for response in responses] == [503] * 12
    assert responses[0].json() == UNAVAILABLE
