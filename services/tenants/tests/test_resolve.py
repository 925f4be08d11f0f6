"""GET /internal/tenants/resolve/ and /status/: what auth and the gateway ask about tenants."""

from typing import Any

import httpx
import pytest

TenantFactory = Any
RESOLVED = {"id", "name", "schema_name", "domain_url", "is_active"}
ONE_PARAMETER = {
    "non_field_errors": ["Give exactly one of the schema_name or domain query parameters."]
}


def resolve(client: httpx.Client, **params: str) -> httpx.Response:
    return client.get("/internal/tenants/resolve/", params=params)


def test_resolve_by_schema_name(internal: httpx.Client, new_tenant: TenantFactory) -> None:
    tenant = new_tenant()
    response = resolve(internal, schema_name=tenant["schema_name"])
    assert response.status_code == 200
    assert response.json() == {
        "id": tenant["id"],
        "name": tenant["name"],
        "schema_name": tenant["schema_name"],
        "domain_url": tenant["domain_url"],
        "is_active": True,
    }


def test_resolve_by_domain_ignores_case_and_port(
    internal: httpx.Client, new_tenant: TenantFactory
) -> None:
    tenant = new_tenant()
    for domain in (
        tenant["domain_url"],
        tenant["domain_url"].upper(),
        f"{tenant['domain_url']}:8000",
    ):
        response = resolve(internal, domain=domain)
        assert response.status_code == 200, domain
        assert response.json()["id"] == tenant["id"]
        assert response.json()["is_active"] is True


def test_resolve_default_tenant(internal: httpx.Client) -> None:
    by_domain = resolve(internal, domain="localhost:8000").json()
    by_schema = resolve(internal, schema_name="public").json()
    assert by_domain == by_schema
    assert set(by_domain) == RESOLVED
    assert by_domain["schema_name"] == "public"
    assert by_domain["is_active"] is True


def test_resolve_deleted_tenant_by_schema_name_is_inactive(
    api: httpx.Client, internal: httpx.Client, new_tenant: TenantFactory
) -> None:
    tenant = new_tenant()
    assert api.delete(f"/api/tenants/{tenant['id']}/").status_code == 204
    response = resolve(internal, schema_name=tenant["schema_name"])
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert response.json()["id"] == tenant["id"]


def test_resolve_deleted_tenant_by_domain_is_a_404(
    api: httpx.Client, internal: httpx.Client, new_tenant: TenantFactory
) -> None:
    tenant = new_tenant()
    assert api.delete(f"/api/tenants/{tenant['id']}/").status_code == 204
    response = resolve(internal, domain=tenant["domain_url"])
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_resolve_domain_reused_after_delete_finds_the_live_tenant(
    api: httpx.Client, internal: httpx.Client, new_tenant: TenantFactory, unique: str
) -> None:
    old = new_tenant()
    assert api.delete(f"/api/tenants/{old['id']}/").status_code == 204
    new = new_tenant(schema_name=f"newer_{unique}", domain_url=old["domain_url"])
    assert resolve(internal, domain=old["domain_url"]).json()["id"] == new["id"]


@pytest.mark.parametrize(
    "params",
    [
        {"schema_name": "no_such_tenant"},
        {"domain": "no-such-tenant.example.com"},
        {"schema_name": "public\x00"},
        {"domain": "localhost\x00"},
    ],
)
def test_resolve_unknown_tenant_is_a_404(internal: httpx.Client, params: dict[str, str]) -> None:
    response = resolve(internal, **params)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize(
    "params",
    [{}, {"schema_name": ""}, {"domain": "  "}, {"schema_name": "public", "domain": "localhost"}],
)
def test_resolve_needs_exactly_one_parameter(
    internal: httpx.Client, params: dict[str, str]
) -> None:
    response = resolve(internal, **params)
    assert response.status_code == 400
    assert response.json() == ONE_PARAMETER


def test_resolve_without_trailing_slash(internal: httpx.Client) -> None:
    response = internal.get("/internal/tenants/resolve", params={"schema_name": "public"})
    assert response.status_code == 200


def statuses(client: httpx.Client) -> dict[str, bool]:
    response = client.get("/internal/tenants/status/")
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"tenants"}
    tenants: dict[str, bool] = response.json()["tenants"]
    return tenants


def test_status_lists_created_tenants_as_active(
    internal: httpx.Client, new_tenant: TenantFactory
) -> None:
    created = [new_tenant()["schema_name"] for _ in range(3)]
    tenants = statuses(internal)
    assert {schema: tenants.get(schema) for schema in created} == dict.fromkeys(created, True)


def test_status_lists_a_deleted_tenant_as_inactive(
    api: httpx.Client, internal: httpx.Client, new_tenant: TenantFactory
) -> None:
    kept, deleted = new_tenant(), new_tenant()
    assert api.delete(f"/api/tenants/{deleted['id']}/").status_code == 204
    tenants = statuses(internal)
    assert tenants[kept["schema_name"]] is True
    assert tenants[deleted["schema_name"]] is False


def test_status_includes_the_default_tenant(internal: httpx.Client) -> None:
    assert statuses(internal)["public"] is True


def test_status_needs_no_user_token_and_no_trailing_slash(internal: httpx.Client) -> None:
    response = internal.get("/internal/tenants/status")
    assert response.status_code == 200
    assert response.json()["tenants"]["public"] is True
