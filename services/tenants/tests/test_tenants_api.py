"""/api/tenants/: CRUD, validation, pagination, search, ordering, immutability, soft delete."""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

TenantFactory = Any

FIELDS = {"id", "name", "schema_name", "domain_url", "created_at", "updated_at"}
INVALID_SCHEMA = (
    "Enter a valid schema name: a lower-case letter followed by up to 62 lower-case letters, "
    "digits or underscores."
)
INVALID_HOST = (
    "Enter a valid hostname (such as clinic.example.com): no scheme, port, path or spaces."
)


def aware(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), value
    return parsed


# --- create -------------------------------------------------------------------------------


def test_create_tenant_returns_201_with_public_fields(api: httpx.Client, unique: str) -> None:
    body = {
        "name": "  Smile Clinic  ",
        "schema_name": f"smile_{unique}",
        "domain_url": f" Smile-{unique}.Example.COM ",
        "ignored_field": "x",
    }
    response = api.post("/api/tenants/", json=body)
    assert response.status_code == 201, response.text
    tenant = response.json()
    assert set(tenant) == FIELDS
    assert isinstance(tenant["id"], int)
    assert tenant["name"] == "Smile Clinic"
    assert tenant["schema_name"] == f"smile_{unique}"
    assert tenant["domain_url"] == f"smile-{unique}.example.com"
    assert aware(tenant["created_at"]) == aware(tenant["updated_at"])
    assert api.get(f"/api/tenants/{tenant['id']}/").json() == tenant


def test_create_tenant_without_trailing_slash_is_served_the_same(
    api: httpx.Client, unique: str
) -> None:
    response = api.post(
        "/api/tenants",
        json={"name": "x", "schema_name": f"s_{unique}", "domain_url": f"{unique}.test"},
    )
    assert response.status_code == 201
    assert api.get(f"/api/tenants/{response.json()['id']}").status_code == 200


def test_create_tenant_requires_every_field(api: httpx.Client) -> None:
    response = api.post("/api/tenants/", json={})
    assert response.status_code == 400
    assert response.json() == {
        "name": ["This field is required."],
        "schema_name": ["This field is required."],
        "domain_url": ["This field is required."],
    }


def test_create_tenant_refuses_nulls_and_wrong_types(api: httpx.Client) -> None:
    response = api.post("/api/tenants/", json={"name": None, "schema_name": 5, "domain_url": []})
    assert response.status_code == 400
    assert response.json() == {
        "name": ["This field may not be null."],
        "schema_name": ["Not a valid string."],
        "domain_url": ["Not a valid string."],
    }


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "This field may not be blank."),
        ("   ", "This field may not be blank."),
        ("x" * 256, "Ensure this field has no more than 255 characters."),
    ],
)
def test_create_tenant_rejects_bad_name(
    api: httpx.Client, unique: str, name: str, message: str
) -> None:
    body = {"name": name, "schema_name": f"n_{unique}", "domain_url": f"{unique}.test"}
    response = api.post("/api/tenants/", json=body)
    assert response.status_code == 400
    assert response.json() == {"name": [message]}


def test_create_tenant_rejects_null_characters(api: httpx.Client, unique: str) -> None:
    body = {"name": "a\x00b", "schema_name": f"n_{unique}\x00", "domain_url": "a\x00.test"}
    response = api.post("/api/tenants/", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "name": ["Null characters are not allowed."],
        "schema_name": [INVALID_SCHEMA],
        "domain_url": [INVALID_HOST],
    }


def test_create_tenant_accepts_255_character_name_after_trimming(
    api: httpx.Client, unique: str
) -> None:
    name = "x" * 255
    body = {"name": f"  {name}  ", "schema_name": f"n_{unique}", "domain_url": f"{unique}.test"}
    response = api.post("/api/tenants/", json=body)
    assert response.status_code == 201
    assert response.json()["name"] == name


@pytest.mark.parametrize(
    ("schema_name", "message"),
    [
        ("", "This field may not be blank."),
        ("1abc", INVALID_SCHEMA),
        ("_abc", INVALID_SCHEMA),
        ("Abc", INVALID_SCHEMA),
        ("ab-c", INVALID_SCHEMA),
        ("ab c", INVALID_SCHEMA),
        ("abc;drop", INVALID_SCHEMA),
        ("a" * 64, INVALID_SCHEMA),
        ("pg_clinic", "Schema names starting with pg_ are reserved."),
        ("public", "This schema name is reserved."),
        ("information_schema", "This schema name is reserved."),
        ("default", "This schema name is reserved."),
        ("template0", "This schema name is reserved."),
        ("template1", "This schema name is reserved."),
        ("postgres", "This schema name is reserved."),
    ],
)
def test_create_tenant_rejects_bad_schema_name(
    api: httpx.Client, unique: str, schema_name: str, message: str
) -> None:
    body = {"name": "x", "schema_name": schema_name, "domain_url": f"{unique}.test"}
    response = api.post("/api/tenants/", json=body)
    assert response.status_code == 400
    assert response.json() == {"schema_name": [message]}


def test_create_tenant_accepts_63_character_schema_name(api: httpx.Client, unique: str) -> None:
    schema_name = f"s{unique}".ljust(63, "0")
    body = {"name": "x", "schema_name": schema_name, "domain_url": f"{unique}.test"}
    response = api.post("/api/tenants/", json=body)
    assert response.status_code == 201
    assert response.json()["schema_name"] == schema_name


@pytest.mark.parametrize(
    "domain_url",
    [
        "http://clinic.example.com",
        "clinic.example.com/path",
        "clinic.example.com:8000",
        "clinic example.com",
        "-clinic.example.com",
        "clinic-.example.com",
        "clinic..example.com",
        "clinic.example.com.",
        "clinic_x.example.com",
        "a" * 64 + ".example.com",
        ".".join(["abcdefghi"] * 26),  # 259 characters
        "xn--bcher-kva.example.com/?",
    ],
)
def test_create_tenant_rejects_invalid_domain(
    api: httpx.Client, unique: str, domain_url: str
) -> None:
    body = {"name": "x", "schema_name": f"d_{unique}", "domain_url": domain_url}
    response = api.post("/api/tenants/", json=body)
    assert response.status_code == 400
    assert response.json() == {"domain_url": [INVALID_HOST]}


def test_create_tenant_rejects_blank_domain(api: httpx.Client, unique: str) -> None:
    body = {"name": "x", "schema_name": f"d_{unique}", "domain_url": "  "}
    response = api.post("/api/tenants/", json=body)
    assert response.status_code == 400
    assert response.json() == {"domain_url": ["This field may not be blank."]}


def test_create_tenant_accepts_longest_hostname(api: httpx.Client, unique: str) -> None:
    domain = ".".join([unique + "a" * 51] * 3) + "." + "b" * 61  # 63+1+63+1+63+1+61 = 253
    assert len(domain) == 253
    body = {"name": "x", "schema_name": f"d_{unique}", "domain_url": domain.upper()}
    response = api.post("/api/tenants/", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["domain_url"] == domain


def test_duplicate_schema_name_is_a_400(api: httpx.Client, new_tenant: TenantFactory) -> None:
    tenant = new_tenant()
    body = {"name": "Other", "schema_name": tenant["schema_name"], "domain_url": "other.test"}
    response = api.post("/api/tenants/", json=body)
    assert response.status_code == 400
    assert response.json() == {"schema_name": ["tenant with this schema name already exists."]}


def test_duplicate_domain_is_a_400_regardless_of_case(
    api: httpx.Client, new_tenant: TenantFactory, unique: str
) -> None:
    tenant = new_tenant()
    body = {
        "name": "Other",
        "schema_name": f"other_{unique}",
        "domain_url": tenant["domain_url"].upper(),
    }
    response = api.post("/api/tenants/", json=body)
    assert response.status_code == 400
    assert response.json() == {"domain_url": ["tenant with this domain url already exists."]}


def test_default_tenant_domain_is_taken(api: httpx.Client, unique: str) -> None:
    body = {"name": "x", "schema_name": f"l_{unique}", "domain_url": "LOCALHOST"}
    response = api.post("/api/tenants/", json=body)
    assert response.status_code == 400
    assert response.json() == {"domain_url": ["tenant with this domain url already exists."]}


def test_create_tenant_with_malformed_json_is_a_400(api: httpx.Client) -> None:
    response = api.post(
        "/api/tenants/", content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")


def test_create_tenant_with_form_body_is_a_415(api: httpx.Client) -> None:
    response = api.post("/api/tenants/", data={"name": "x"})
    assert response.status_code == 415
    assert "detail" in response.json()


def test_create_tenant_with_a_json_list_is_a_400(api: httpx.Client) -> None:
    response = api.post("/api/tenants/", json=["x"])
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Invalid data. Expected a dictionary."]}


# --- retrieve -----------------------------------------------------------------------------


def test_get_unknown_tenant_is_a_404(api: httpx.Client) -> None:
    response = api.get("/api/tenants/987654321/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


# Past the 32-bit id column: PostgreSQL refused 2**31 and 2**63-1 as parameters (a 500).
@pytest.mark.parametrize(
    "tenant_id",
    ["abc", "1.5", "0", "-1", "2147483648", "9223372036854775807", "9223372036854775808", "9" * 30],
)
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_a_tenant_id_that_names_nothing_is_a_404(
    api: httpx.Client, tenant_id: str, method: str
) -> None:
    response = api.request(method, f"/api/tenants/{tenant_id}/", json={})
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_a_tenant_id_spelled_other_than_in_digits_names_nothing(
    api: httpx.Client, new_tenant: Callable[..., dict[str, Any]]
) -> None:
    tenant = new_tenant()["id"]
    assert api.get(f"/api/tenants/{tenant}/").status_code == 200
    for spelled in (f"{tenant}.0", f"+{tenant}", f"%20{tenant}"):
        assert api.get(f"/api/tenants/{spelled}/").status_code == 404, spelled


def test_unsupported_method_is_a_405_naming_the_allowed_ones(api: httpx.Client) -> None:
    response = api.delete("/api/tenants/")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method not allowed."}
    assert response.headers["allow"] == "GET, HEAD, POST"
    allowed = api.post("/api/tenants/1/", json={}).headers["allow"]
    assert allowed == "DELETE, GET, HEAD, PATCH, PUT"


# --- update -------------------------------------------------------------------------------


def test_put_replaces_writable_fields(
    api: httpx.Client, new_tenant: TenantFactory, unique: str
) -> None:
    tenant = new_tenant()
    body = {
        "name": " Renamed ",
        "schema_name": tenant["schema_name"],
        "domain_url": f"NEW-{unique}.example.org",
    }
    response = api.put(f"/api/tenants/{tenant['id']}/", json=body)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["name"] == "Renamed"
    assert updated["domain_url"] == f"new-{unique}.example.org"
    assert updated["schema_name"] == tenant["schema_name"]
    assert updated["created_at"] == tenant["created_at"]
    assert aware(updated["updated_at"]) > aware(tenant["updated_at"])
    assert api.get(f"/api/tenants/{tenant['id']}/").json() == updated


def test_put_requires_every_writable_field(api: httpx.Client, new_tenant: TenantFactory) -> None:
    tenant = new_tenant()
    response = api.put(f"/api/tenants/{tenant['id']}/", json={"name": "Only name"})
    assert response.status_code == 400
    assert response.json() == {
        "schema_name": ["This field is required."],
        "domain_url": ["This field is required."],
    }


def test_put_validates_fields(api: httpx.Client, new_tenant: TenantFactory) -> None:
    tenant = new_tenant()
    body = {"name": " ", "schema_name": tenant["schema_name"], "domain_url": "a/b"}
    response = api.put(f"/api/tenants/{tenant['id']}/", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "name": ["This field may not be blank."],
        "domain_url": [INVALID_HOST],
    }


def test_put_changing_schema_name_is_refused(api: httpx.Client, new_tenant: TenantFactory) -> None:
    tenant = new_tenant()
    body = {"name": "x", "schema_name": "something_else", "domain_url": tenant["domain_url"]}
    response = api.put(f"/api/tenants/{tenant['id']}/", json=body)
    assert response.status_code == 400
    assert response.json() == {"schema_name": ["schema_name cannot be changed after creation."]}
    assert api.get(f"/api/tenants/{tenant['id']}/").json() == tenant


def test_patch_changes_only_given_fields(api: httpx.Client, new_tenant: TenantFactory) -> None:
    tenant = new_tenant()
    response = api.patch(f"/api/tenants/{tenant['id']}/", json={"name": "  Patched  "})
    assert response.status_code == 200
    patched = response.json()
    assert patched["name"] == "Patched"
    assert patched["domain_url"] == tenant["domain_url"]
    assert patched["schema_name"] == tenant["schema_name"]


def test_patch_with_same_schema_name_is_fine(api: httpx.Client, new_tenant: TenantFactory) -> None:
    tenant = new_tenant()
    response = api.patch(
        f"/api/tenants/{tenant['id']}/", json={"schema_name": tenant["schema_name"]}
    )
    assert response.status_code == 200
    assert response.json()["schema_name"] == tenant["schema_name"]


def test_put_with_padded_same_schema_name_is_fine(
    api: httpx.Client, new_tenant: TenantFactory
) -> None:
    tenant = new_tenant()
    body = {"name": "x", "schema_name": f" {tenant['schema_name']} ", "domain_url": "Pad.Test"}
    response = api.put(f"/api/tenants/{tenant['id']}/", json=body)
    assert response.status_code == 200
    assert response.json()["schema_name"] == tenant["schema_name"]


def test_put_with_null_schema_name_is_refused(api: httpx.Client, new_tenant: TenantFactory) -> None:
    tenant = new_tenant()
    body = {"name": "x", "schema_name": None, "domain_url": tenant["domain_url"]}
    response = api.put(f"/api/tenants/{tenant['id']}/", json=body)
    assert response.status_code == 400
    assert response.json() == {"schema_name": ["This field may not be null."]}


def test_patch_changing_schema_name_is_refused(
    api: httpx.Client, new_tenant: TenantFactory
) -> None:
    tenant = new_tenant()
    response = api.patch(
        f"/api/tenants/{tenant['id']}/", json={"name": "new", "schema_name": "other_schema"}
    )
    assert response.status_code == 400
    assert response.json() == {"schema_name": ["schema_name cannot be changed after creation."]}
    assert api.get(f"/api/tenants/{tenant['id']}/").json()["name"] == tenant["name"]


def test_patch_with_nulls_is_refused(api: httpx.Client, new_tenant: TenantFactory) -> None:
    tenant = new_tenant()
    response = api.patch(
        f"/api/tenants/{tenant['id']}/",
        json={"name": None, "schema_name": None, "domain_url": None},
    )
    assert response.status_code == 400
    assert response.json() == {
        "name": ["This field may not be null."],
        "schema_name": ["This field may not be null."],
        "domain_url": ["This field may not be null."],
    }


def test_patch_to_a_taken_domain_is_a_400(api: httpx.Client, new_tenant: TenantFactory) -> None:
    first, second = new_tenant(), new_tenant()
    response = api.patch(
        f"/api/tenants/{second['id']}/", json={"domain_url": first["domain_url"].upper()}
    )
    assert response.status_code == 400
    assert response.json() == {"domain_url": ["tenant with this domain url already exists."]}


def test_patch_keeping_own_domain_is_fine(api: httpx.Client, new_tenant: TenantFactory) -> None:
    tenant = new_tenant()
    response = api.patch(f"/api/tenants/{tenant['id']}/", json={"domain_url": tenant["domain_url"]})
    assert response.status_code == 200


def test_update_unknown_tenant_is_a_404(api: httpx.Client) -> None:
    assert api.patch("/api/tenants/987654321/", json={"name": "x"}).status_code == 404
    body = {"name": "x", "schema_name": "x", "domain_url": "x.test"}
    response = api.put("/api/tenants/987654321/", json=body)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_default_tenant_can_be_renamed_with_put(api: httpx.Client) -> None:
    default = _default_tenant(api)
    body = {"name": "Default practice", "schema_name": "public", "domain_url": "localhost"}
    response = api.put(f"/api/tenants/{default['id']}/", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["schema_name"] == "public"


# --- delete -------------------------------------------------------------------------------


def test_delete_hides_tenant(api: httpx.Client, new_tenant: TenantFactory) -> None:
    tenant = new_tenant()
    response = api.delete(f"/api/tenants/{tenant['id']}/")
    assert response.status_code == 204
    assert response.content == b""
    assert api.get(f"/api/tenants/{tenant['id']}/").status_code == 404
    assert api.patch(f"/api/tenants/{tenant['id']}/", json={"name": "x"}).status_code == 404
    assert api.delete(f"/api/tenants/{tenant['id']}/").status_code == 404
    listed = api.get("/api/tenants/", params={"search": tenant["schema_name"]}).json()
    assert listed["count"] == 0


def test_deleted_tenant_schema_name_is_never_reused(
    api: httpx.Client, new_tenant: TenantFactory, unique: str
) -> None:
    tenant = new_tenant()
    assert api.delete(f"/api/tenants/{tenant['id']}/").status_code == 204
    body = {"name": "Again", "schema_name": tenant["schema_name"], "domain_url": f"a-{unique}.test"}
    response = api.post("/api/tenants/", json=body)
    assert response.status_code == 400
    assert response.json() == {"schema_name": ["tenant with this schema name already exists."]}


def test_deleted_tenant_domain_can_be_reused(
    api: httpx.Client, new_tenant: TenantFactory, unique: str
) -> None:
    tenant = new_tenant()
    assert api.delete(f"/api/tenants/{tenant['id']}/").status_code == 204
    body = {"name": "New", "schema_name": f"reuse_{unique}", "domain_url": tenant["domain_url"]}
    assert api.post("/api/tenants/", json=body).status_code == 201


def test_default_tenant_cannot_be_deleted(api: httpx.Client) -> None:
    default = _default_tenant(api)
    response = api.delete(f"/api/tenants/{default['id']}/")
    assert response.status_code == 409
    assert response.json() == {"detail": "The default tenant cannot be deleted."}
    assert api.get(f"/api/tenants/{default['id']}/").status_code == 200


def test_delete_unknown_tenant_is_a_404(api: httpx.Client) -> None:
    response = api.delete("/api/tenants/987654321/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


# --- list ---------------------------------------------------------------------------------


def _default_tenant(api: httpx.Client) -> dict[str, Any]:
    results = api.get("/api/tenants/", params={"search": "localhost"}).json()["results"]
    [default] = [tenant for tenant in results if tenant["schema_name"] == "public"]
    return default


def test_list_has_drf_pagination_shape(api: httpx.Client, new_tenant: TenantFactory) -> None:
    tenant = new_tenant()
    response = api.get("/api/tenants/", params={"search": tenant["schema_name"]})
    assert response.status_code == 200
    assert response.json() == {"count": 1, "next": None, "previous": None, "results": [tenant]}


def test_list_includes_default_tenant(api: httpx.Client) -> None:
    default = _default_tenant(api)
    assert default["domain_url"] == "localhost"
    assert default["name"] == "Default practice"


def test_list_pages_with_absolute_links(
    api: httpx.Client, new_tenant: TenantFactory, unique: str, base_url: str
) -> None:
    created = [new_tenant() for _ in range(5)]
    ids = [tenant["id"] for tenant in created]
    params: dict[str, Any] = {"search": unique, "page_size": 2}
    first = api.get("/api/tenants/", params=params).json()
    assert first["count"] == 5
    assert [t["id"] for t in first["results"]] == ids[:2]
    assert first["previous"] is None
    assert first["next"] == f"{base_url}/api/tenants/?search={unique}&page_size=2&page=2"

    second = httpx.get(first["next"], headers=api.headers).json()
    assert [t["id"] for t in second["results"]] == ids[2:4]
    assert second["previous"] == f"{base_url}/api/tenants/?search={unique}&page_size=2"
    assert second["next"] == f"{base_url}/api/tenants/?search={unique}&page_size=2&page=3"

    third = httpx.get(second["next"], headers=api.headers).json()
    assert [t["id"] for t in third["results"]] == ids[4:]
    assert third["next"] is None
    assert third["previous"] == f"{base_url}/api/tenants/?search={unique}&page_size=2&page=2"


def test_list_links_use_the_host_and_scheme_the_client_used(
    api: httpx.Client, new_tenant: TenantFactory, unique: str
) -> None:
    new_tenant()
    new_tenant()
    params: dict[str, Any] = {"search": unique, "page_size": 1}
    through_gateway = api.get(
        "/api/tenants/",
        params=params,
        headers={"Host": "api.dentiapro.test:8000", "X-Forwarded-Proto": "https"},
    ).json()
    assert through_gateway["next"] == (
        f"https://api.dentiapro.test:8000/api/tenants/?search={unique}&page_size=1&page=2"
    )
    plain_host = api.get("/api/tenants/", params=params, headers={"Host": "clinic.test"}).json()
    assert plain_host["next"].startswith("http://clinic.test/api/tenants/?")


@pytest.mark.parametrize("page", ["0", "-1", "abc", "1.5", ""])
def test_list_with_invalid_page_is_a_404(api: httpx.Client, page: str) -> None:
    response = api.get("/api/tenants/", params={"page": page})
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}


def test_list_page_past_the_end_is_a_404(api: httpx.Client, new_tenant: TenantFactory) -> None:
    tenant = new_tenant()
    params = {"search": tenant["schema_name"], "page": 2}
    response = api.get("/api/tenants/", params=params)
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}


def test_list_first_page_of_nothing_is_empty_not_404(api: httpx.Client, unique: str) -> None:
    response = api.get("/api/tenants/", params={"search": f"nothing-{unique}"})
    assert response.status_code == 200
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_list_page_size_is_capped_at_200(
    api: httpx.Client, insert_tenants: Any, unique: str
) -> None:
    insert_tenants(201)
    response = api.get("/api/tenants/", params={"search": unique, "page_size": 1000})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 201
    assert len(body["results"]) == 200
    assert body["next"].endswith(f"?search={unique}&page_size=1000&page=2")
    last = httpx.get(body["next"], headers=api.headers).json()
    assert [t["name"] for t in last["results"]] == [f"Bulk {unique} 0200"]


def test_list_default_page_size_is_50(api: httpx.Client, insert_tenants: Any, unique: str) -> None:
    insert_tenants(51)
    body = api.get("/api/tenants/", params={"search": unique}).json()
    assert body["count"] == 51
    assert len(body["results"]) == 50
    assert body["next"].endswith(f"?search={unique}&page=2")


# DESIGN.md: a parameter that should be a number and is not one is a 400 on it (the
# document says page_size is an integer from 1; DRF's silent fallback made that untrue).
@pytest.mark.parametrize("page_size", ["0", "-5", "many"])
def test_list_refuses_invalid_page_size(api: httpx.Client, unique: str, page_size: str) -> None:
    response = api.get("/api/tenants/", params={"search": unique, "page_size": page_size})
    assert response.status_code == 400
    assert list(response.json()) == ["page_size"]


def test_search_is_case_insensitive_on_name_schema_and_domain(
    api: httpx.Client, new_tenant: TenantFactory, unique: str
) -> None:
    by_name = new_tenant(name=f"Dr ZÄHNE {unique}", domain_url=f"x1-{unique}.test")
    by_schema = new_tenant(schema_name=f"molar_{unique}")
    by_domain = new_tenant(domain_url=f"crown-{unique}.example.net")

    def found(term: str) -> list[int]:
        results = api.get("/api/tenants/", params={"search": term}).json()["results"]
        return [tenant["id"] for tenant in results]

    assert found(f"dr zÄhne {unique.upper()}") == [by_name["id"]]
    assert found(f"MOLAR_{unique}") == [by_schema["id"]]
    assert found(f"Crown-{unique}.EXAMPLE") == [by_domain["id"]]
    assert found(f"  molar_{unique}  ") == [by_schema["id"]]


def test_search_ignores_null_characters(
    api: httpx.Client, new_tenant: TenantFactory, unique: str
) -> None:
    tenant = new_tenant()
    response = api.get("/api/tenants/", params={"search": f"\x00{tenant['schema_name']}\x00"})
    assert response.status_code == 200
    assert [t["id"] for t in response.json()["results"]] == [tenant["id"]]


def test_search_treats_wildcards_literally(
    api: httpx.Client, new_tenant: TenantFactory, unique: str
) -> None:
    tenant = new_tenant(name=f"100% {unique}")
    new_tenant(name=f"100x {unique}")
    results = api.get("/api/tenants/", params={"search": f"100% {unique}"}).json()["results"]
    assert [t["id"] for t in results] == [tenant["id"]]
    assert api.get("/api/tenants/", params={"search": f"{unique}_%"}).json()["count"] == 0


@pytest.mark.parametrize(
    "field", ["id", "name", "schema_name", "domain_url", "created_at", "updated_at"]
)
def test_ordering_on_each_listed_field(
    api: httpx.Client, new_tenant: TenantFactory, unique: str, field: str
) -> None:
    created = [
        new_tenant(name=f"{letter} {unique}", schema_name=f"{letter}_{unique}")
        for letter in ("b", "c", "a")
    ]
    expected = sorted(created, key=lambda tenant: (tenant[field], tenant["id"]))
    ascending = api.get("/api/tenants/", params={"search": unique, "ordering": field}).json()
    assert [t["id"] for t in ascending["results"]] == [t["id"] for t in expected]
    descending = api.get("/api/tenants/", params={"search": unique, "ordering": f"-{field}"})
    expected_desc = sorted(created, key=lambda tenant: tenant[field], reverse=True)
    assert [t["id"] for t in descending.json()["results"]] == [t["id"] for t in expected_desc]


def test_ordering_on_unknown_field_is_ignored(
    api: httpx.Client, new_tenant: TenantFactory, unique: str
) -> None:
    created = [new_tenant() for _ in range(3)]
    response = api.get(
        "/api/tenants/", params={"search": unique, "ordering": "deleted_at,password"}
    )
    assert response.status_code == 200
    assert [t["id"] for t in response.json()["results"]] == [t["id"] for t in created]


def test_ordering_on_several_fields(
    api: httpx.Client, new_tenant: TenantFactory, unique: str
) -> None:
    same_a = new_tenant(name=f"same {unique}")
    other = new_tenant(name=f"other {unique}")
    same_b = new_tenant(name=f"same {unique}")
    response = api.get("/api/tenants/", params={"search": unique, "ordering": "-name,-id"})
    assert [t["id"] for t in response.json()["results"]] == [
        same_b["id"],
        same_a["id"],
        other["id"],
    ]


def test_updated_after_lists_recent_changes(
    api: httpx.Client, new_tenant: TenantFactory, unique: str
) -> None:
    old = new_tenant()
    recent = new_tenant()
    patched = api.patch(f"/api/tenants/{old['id']}/", json={"name": f"touched {unique}"}).json()
    since = patched["updated_at"]
    results = api.get("/api/tenants/", params={"search": unique, "updated_after": since}).json()
    assert [t["id"] for t in results["results"]] == [old["id"]]
    earlier = aware(recent["updated_at"]).replace(tzinfo=None).isoformat()  # naive = UTC
    results = api.get("/api/tenants/", params={"search": unique, "updated_after": earlier}).json()
    assert {t["id"] for t in results["results"]} == {old["id"], recent["id"]}


def test_updated_after_with_bad_datetime_is_a_400(api: httpx.Client) -> None:
    response = api.get("/api/tenants/", params={"updated_after": "yesterday"})
    assert response.status_code == 400
    assert list(response.json()) == ["updated_after"]
