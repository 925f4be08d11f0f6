"""The gateway's ``/api/openapi.json`` (the edge's ``/gateway/openapi.json``): the services'
documents merged into one, and how it behaves while a service is down or its document does
not merge. The services are stand-ins that serve documents FastAPI generated from small apps
(so they carry its 422 leftovers), over real HTTP; ``merge`` itself is also tested directly.
"""

import asyncio
import copy
import gzip
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Annotated, Any

import httpx
import pytest
from common.testing import free_port, serve
from edge.main import create_app
from edge.openapi import MergeError, merge, unresolved_refs
from edge.settings import EdgeSettings
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from openapi_spec_validator import validate
from pydantic import BaseModel

Json = dict[str, Any]
Bearer = Annotated[HTTPAuthorizationCredentials, Depends(HTTPBearer())]


class Page(BaseModel):
    count: int
    results: list[str]


class Detail(BaseModel):  # every service's error body: identical in each document
    detail: str


class Credentials(BaseModel):
    username: str
    password: str


class Cabinet(BaseModel):
    name: str


def auth_document() -> Json:
    app = FastAPI(title="DentiaPro auth")

    @app.post("/api/auth/login/", tags=["auth"])
    def login(body: Credentials) -> Page:
        raise NotImplementedError

    @app.get("/api/auth/users/", tags=["auth"], responses={401: {"model": Detail}})
    def list_users(_: Bearer) -> Page:
        raise NotImplementedError

    @app.get("/internal/tenants/resolve/")
    def resolve(schema_name: str) -> dict[str, str]:
        raise NotImplementedError

    @app.get("/health/")
    def health() -> dict[str, str]:
        raise NotImplementedError

    @app.get("/metrics/")
    def metrics() -> str:
        raise NotImplementedError

    return app.openapi()


def clinic_document() -> Json:
    app = FastAPI(title="DentiaPro clinic")

    class Page(BaseModel):  # another "Page" than auth's: clinic's lists hold cabinets
        count: int
        results: list[Cabinet]

    @app.get("/api/cabinets/", tags=["clinic"])
    def list_cabinets(_: Bearer, page: int = 1) -> Page:
        raise NotImplementedError

    @app.post(
        "/api/cabinets/", tags=["clinic"], status_code=201, responses={401: {"model": Detail}}
    )
    def create_cabinet(body: Cabinet, _: Bearer) -> Cabinet:
        raise NotImplementedError

    @app.get("/api/internal/cabinets/")
    def internal() -> dict[str, str]:
        raise NotImplementedError

    @app.get("/health/live/")
    def live() -> dict[str, str]:
        raise NotImplementedError

    return app.openapi()


def tenants_document() -> Json:
    app = FastAPI(title="DentiaPro tenants")

    @app.get("/api/tenants/", tags=["tenants"])
    def list_tenants(_: Bearer) -> Page:
        raise NotImplementedError

    return app.openapi()


def documents() -> dict[str, Json]:
    return {"auth": auth_document(), "clinic": clinic_document(), "tenants": tenants_document()}


def schema_of(document: Json, ref: str) -> Json:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


def response_ref(document: Json, path: str, method: str = "get") -> str:
    responses = document["paths"][path][method]["responses"]
    ok = responses.get("200") or responses["201"]
    return str(ok["content"]["application/json"]["schema"]["$ref"])


# ------------------------------------------------------------------------------------ merge


def test_merged_document_is_valid_openapi_with_every_public_path() -> None:
    merged = merge(documents(), version="1.2.3")
    validate(merged)
    assert merged["openapi"] == "3.1.0"
    assert merged["info"]["title"] == "DentiaPro API"
    assert merged["info"]["version"] == "1.2.3"
    assert merged["servers"] == [{"url": "/"}]
    assert list(merged["paths"]) == [
        "/api/auth/login/",
        "/api/auth/users/",
        "/api/cabinets/",
        "/api/tenants/",
        "/health/",
    ]
    assert unresolved_refs(merged) == []


def test_internal_metrics_and_service_health_paths_are_dropped() -> None:
    merged = merge(documents(), version="1")
    for path in merged["paths"]:
        assert "/internal/" not in path
        assert not path.startswith(("/metrics", "/health/live"))
    assert "/api/internal/cabinets/" not in merged["paths"]


def test_fastapi_422_leftovers_are_dropped() -> None:
    source = documents()
    assert "422" in source["auth"]["paths"]["/api/auth/login/"]["post"]["responses"]
    merged = merge(source, version="1")
    for item in merged["paths"].values():
        for operation in item.values():
            assert "422" not in operation["responses"]
    assert "HTTPValidationError" not in merged["components"]["schemas"]
    assert "ValidationError" not in merged["components"]["schemas"]


def test_the_gateway_health_is_documented_with_its_pass_and_fail_bodies() -> None:
    merged = merge(documents(), version="1")
    responses = merged["paths"]["/health/"]["get"]["responses"]
    assert set(responses) == {"200", "503"}
    body = schema_of(merged, responses["503"]["content"]["application/json"]["schema"]["$ref"])
    assert body["properties"]["status"]["enum"] == ["pass", "fail"]
    services = schema_of(merged, body["properties"]["services"]["$ref"])
    assert set(services["required"]) == {"auth", "clinic", "tenants"}


def test_identical_same_name_schemas_are_merged_once() -> None:
    merged = merge(documents(), version="1")
    refs = [
        merged["paths"][path][method]["responses"]["401"]["content"]["application/json"]
        for path, method in (("/api/auth/users/", "get"), ("/api/cabinets/", "post"))
    ]
    assert refs[0] == refs[1] == {"schema": {"$ref": "#/components/schemas/Detail"}}
    assert merged["components"]["schemas"]["Detail"]["required"] == ["detail"]


def test_different_same_name_schemas_are_renamed_per_service_and_refs_follow() -> None:
    source = documents()
    assert response_ref(source["auth"], "/api/auth/users/") == "#/components/schemas/Page"
    assert response_ref(source["clinic"], "/api/cabinets/") == "#/components/schemas/Page"
    merged = merge(source, version="1")
    schemas = merged["components"]["schemas"]
    assert "Page" not in schemas
    assert response_ref(merged, "/api/auth/users/") == "#/components/schemas/AuthPage"
    assert response_ref(merged, "/api/tenants/") == "#/components/schemas/TenantsPage"
    assert response_ref(merged, "/api/cabinets/") == "#/components/schemas/ClinicPage"
    assert schemas["AuthPage"] == source["auth"]["components"]["schemas"]["Page"]
    clinic_items = schemas["ClinicPage"]["properties"]["results"]["items"]
    assert clinic_items == {"$ref": "#/components/schemas/Cabinet"}


def test_a_schema_referring_to_a_conflicting_one_is_renamed_too() -> None:
    """Two textually identical ``List`` schemas that refer to different ``Item``s differ."""

    def document(item: Json) -> Json:
        return {
            "openapi": "3.1.0",
            "info": {"title": "x", "version": "1"},
            "paths": {
                "/api/things/": {
                    "get": {
                        "responses": {
                            "200": {
                                "description": "ok",
                                "content": {
                                    "application/json": {
                                        "schema": {"$ref": "#/components/schemas/List"}
                                    }
                                },
                            }
                        }
                    }
                }
            },
            "components": {
                "schemas": {
                    "List": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                    "Item": item,
                }
            },
        }

    first = document({"type": "string"})
    second = document({"type": "integer"})
    second["paths"] = {"/api/others/": second["paths"]["/api/things/"]}
    merged = merge({"auth": first, "clinic": second}, version="1")
    schemas = merged["components"]["schemas"]
    assert set(schemas) >= {"AuthList", "ClinicList", "AuthItem", "ClinicItem"}
    assert "List" not in schemas
    assert schemas["ClinicList"]["items"] == {"$ref": "#/components/schemas/ClinicItem"}
    assert unresolved_refs(merged) == []


def test_a_discriminator_mapping_follows_a_rename() -> None:
    source = documents()
    clinic_page = source["clinic"]["components"]["schemas"]["Page"]
    clinic_page["discriminator"] = {
        "propertyName": "kind",
        "mapping": {"page": "#/components/schemas/Page"},
    }
    merged = merge(source, version="1")
    mapping = merged["components"]["schemas"]["ClinicPage"]["discriminator"]["mapping"]
    assert mapping == {"page": "#/components/schemas/ClinicPage"}
    source["clinic"]["components"]["schemas"]["Page"]["discriminator"]["mapping"]["x"] = (
        "#/components/schemas/Missing"
    )
    with pytest.raises(MergeError, match="Missing"):
        merge(source, version="1")


def test_bearer_security_scheme_is_kept_with_every_requirement() -> None:
    merged = merge(documents(), version="1")
    assert merged["components"]["securitySchemes"] == {
        "HTTPBearer": {"type": "http", "scheme": "bearer"}
    }
    assert merged["paths"]["/api/cabinets/"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in merged["paths"]["/api/auth/login/"]["post"]


def test_different_same_name_security_schemes_are_renamed_in_requirements_too() -> None:
    source = documents()
    source["tenants"]["components"]["securitySchemes"]["HTTPBearer"]["bearerFormat"] = "JWT"
    merged = merge(source, version="1")
    schemes = merged["components"]["securitySchemes"]
    assert set(schemes) == {"AuthHTTPBearer", "ClinicHTTPBearer", "TenantsHTTPBearer"}
    assert merged["paths"]["/api/tenants/"]["get"]["security"] == [{"TenantsHTTPBearer": []}]
    validate(merged)


def test_a_document_wide_security_requirement_stays_with_its_own_operations() -> None:
    source = documents()
    source["tenants"]["security"] = [{"HTTPBearer": []}]
    operation = source["tenants"]["paths"]["/api/tenants/"]["get"]
    del operation["security"]
    merged = merge(source, version="1")
    assert "security" not in merged
    assert merged["paths"]["/api/tenants/"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in merged["paths"]["/api/auth/login/"]["post"]


def test_a_path_documented_by_two_services_fails_loudly() -> None:
    source = documents()
    source["tenants"]["paths"]["/api/cabinets/"] = {
        "delete": {"responses": {"204": {"description": "Gone."}}}
    }
    with pytest.raises(
        MergeError, match=r"/api/cabinets/ is documented by both clinic and tenants"
    ):
        merge(source, version="1")


def test_an_unresolved_reference_fails_loudly() -> None:
    source = documents()
    source["clinic"]["components"]["schemas"].pop("Cabinet")
    with pytest.raises(
        MergeError, match=r"clinic: unresolved references #/components/schemas/Cabinet"
    ):
        merge(source, version="1")


def test_a_reference_to_another_services_schema_is_not_borrowed() -> None:
    """clinic referring to a name only auth defines would resolve once merged: refused."""
    source = documents()
    source["clinic"]["paths"]["/api/cabinets/"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"] = {"$ref": "#/components/schemas/Credentials"}
    with pytest.raises(MergeError, match="clinic: unresolved references"):
        merge(source, version="1")


def test_a_duplicate_operation_id_fails_loudly() -> None:
    source = documents()
    operation = source["tenants"]["paths"]["/api/tenants/"]["get"]
    operation["operationId"] = source["clinic"]["paths"]["/api/cabinets/"]["get"]["operationId"]
    with pytest.raises(MergeError, match="operationId"):
        merge(source, version="1")


def test_a_document_that_is_not_openapi_3_1_is_refused() -> None:
    source = documents()
    source["auth"]["openapi"] = "3.0.3"
    with pytest.raises(MergeError, match=r"auth: not an OpenAPI 3\.1 document"):
        merge(source, version="1")


# ---------------------------------------------------------------------- the edge over HTTP


class DocumentService:
    """A service's private port: ``/openapi.json/`` answers ``document`` with ``status``."""

    def __init__(self, document: Json) -> None:
        self.document = document
        self.status = 200
        self.calls = 0
        self.delay = 0.0
        self.app = FastAPI(openapi_url=None)

        @self.app.get("/openapi.json/")
        def openapi() -> JSONResponse:
            self.calls += 1
            time.sleep(self.delay)
            return JSONResponse(self.document, status_code=self.status)


Edge = Callable[..., AbstractContextManager[str]]


@pytest.fixture
def services() -> Iterator[dict[str, tuple[DocumentService, str]]]:
    """auth and tenants serving; clinic's port is free (nothing listens yet)."""
    auth, tenants = DocumentService(auth_document()), DocumentService(tenants_document())
    with serve(auth.app) as auth_url, serve(tenants.app) as tenants_url:
        clinic_port = free_port()
        yield {
            "auth": (auth, auth_url),
            "tenants": (tenants, tenants_url),
            "clinic": (DocumentService(clinic_document()), f"http://127.0.0.1:{clinic_port}"),
        }


def edge_for(services: dict[str, tuple[DocumentService, str]], **settings: Any) -> Any:
    return serve(
        create_app(
            EdgeSettings(
                auth_url=services["auth"][1],
                clinic_url=services["clinic"][1],
                tenants_url=services["tenants"][1],
                **settings,
            )
        )
    )


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def get_document(edge: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{edge}/gateway/openapi.json", headers=headers, timeout=10)


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_edge_serves_the_merged_document_with_a_validator(
    services: dict[str, tuple[DocumentService, str]],
) -> None:
    clinic, clinic_url = services["clinic"]
    with serve(clinic.app, port=port_of(clinic_url)), edge_for(services) as edge:
        response = get_document(edge, **{"Accept-Encoding": "identity"})
        assert response.status_code == 200
        assert "content-encoding" not in response.headers
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-store"
        document = response.json()
        validate(document)
        assert "/api/cabinets/" in document["paths"]
        assert "/internal/tenants/resolve/" not in document["paths"]

        # Unchanged: a 304 without a body, for the identity and the gzip representation.
        etag = response.headers["etag"]
        again = get_document(edge, **{"If-None-Match": etag, "Accept-Encoding": "identity"})
        assert again.status_code == 304
        assert again.content == b""
        with httpx.stream(
            "GET", f"{edge}/gateway/openapi.json", headers={"Accept-Encoding": "gzip"}
        ) as raw:
            assert raw.headers["content-encoding"] == "gzip"
            assert raw.headers["vary"] == "Accept-Encoding"
            assert raw.headers["etag"] != etag
            assert gzip.decompress(b"".join(raw.iter_raw())) == response.content
        held = f'W/{raw.headers["etag"]}, "other"'
        assert get_document(edge, **{"If-None-Match": held}).status_code == 304
        # Cached: the services are asked once per build, not per request.
        calls = clinic.calls
        get_document(edge)
        assert clinic.calls == calls


def test_concurrent_first_requests_share_one_build(
    services: dict[str, tuple[DocumentService, str]],
) -> None:
    clinic, clinic_url = services["clinic"]
    clinic.delay = 0.3
    with serve(clinic.app, port=port_of(clinic_url)), edge_for(services) as edge:

        async def fetch_all() -> list[int]:
            async with httpx.AsyncClient(timeout=10) as client:
                url = f"{edge}/gateway/openapi.json"
                responses = await asyncio.gather(*(client.get(url) for _ in range(20)))
            return [response.status_code for response in responses]

        assert asyncio.run(fetch_all()) == [200] * 20
    assert clinic.calls == 1


def test_a_service_down_from_the_start_is_a_503_naming_it_then_recovers(
    services: dict[str, tuple[DocumentService, str]],
) -> None:
    clinic, clinic_url = services["clinic"]
    with edge_for(services, openapi_cache_seconds=0) as edge:
        response = get_document(edge)
        assert response.status_code == 503
        detail = response.json()["detail"]
        assert "no document from clinic: unreachable (ConnectError)." in detail
        assert "auth" not in detail
        assert response.headers["retry-after"] == "5"
        with serve(clinic.app, port=port_of(clinic_url)):
            response = get_document(edge)
            assert response.status_code == 200
            assert "/api/cabinets/" in response.json()["paths"]


def test_a_service_failing_later_keeps_its_paths_from_its_last_document(
    services: dict[str, tuple[DocumentService, str]],
) -> None:
    clinic, clinic_url = services["clinic"]
    tenants, _ = services["tenants"]
    with edge_for(services, openapi_cache_seconds=0) as edge:
        with serve(clinic.app, port=port_of(clinic_url)):
            first = get_document(edge).json()
        # clinic gone, tenants answering 500: the document keeps every path.
        tenants.status = 500
        for _ in range(3):
            response = get_document(edge)
            assert response.status_code == 200
            assert response.json() == first
        # Back, with a new operation: the next builds pick it up (rebuilt in the background).
        tenants.status = 200
        tenants.document = copy.deepcopy(tenants.document)
        tenants.document["paths"]["/api/tenants/{tenant_id}/"] = copy.deepcopy(
            tenants.document["paths"]["/api/tenants/"]
        )
        tenants.document["paths"]["/api/tenants/{tenant_id}/"]["get"]["operationId"] = "get_tenant"
        until(lambda: "/api/tenants/{tenant_id}/" in get_document(edge).json()["paths"])
        assert "/api/cabinets/" in get_document(edge).json()["paths"]


def test_documents_that_do_not_merge_are_a_503_saying_why(
    services: dict[str, tuple[DocumentService, str]],
) -> None:
    clinic, clinic_url = services["clinic"]
    tenants, _ = services["tenants"]
    tenants.document = copy.deepcopy(tenants.document)
    tenants.document["paths"]["/api/cabinets/"] = {
        "delete": {"responses": {"204": {"description": "Gone."}}}
    }
    with serve(clinic.app, port=port_of(clinic_url)), edge_for(services) as edge:
        response = get_document(edge)
    assert response.status_code == 503
    assert "/api/cabinets/ is documented by both clinic and tenants" in response.json()["detail"]


def test_a_malformed_document_is_a_503_not_a_500(
    services: dict[str, tuple[DocumentService, str]],
) -> None:
    clinic, clinic_url = services["clinic"]
    clinic.document = copy.deepcopy(clinic.document)
    clinic.document["paths"]["/api/rooms/"] = "not a path item"
    with serve(clinic.app, port=port_of(clinic_url)), edge_for(services) as edge:
        response = get_document(edge)
    assert response.status_code == 503
    assert "documents do not merge (malformed document)" in response.json()["detail"]


def test_documents_that_stop_merging_leave_the_last_good_one_served(
    services: dict[str, tuple[DocumentService, str]],
) -> None:
    clinic, clinic_url = services["clinic"]
    tenants, _ = services["tenants"]
    with (
        serve(clinic.app, port=port_of(clinic_url)),
        edge_for(services, openapi_cache_seconds=0) as edge,
    ):
        good = get_document(edge).json()
        tenants.document = copy.deepcopy(tenants.document)
        tenants.document["openapi"] = "2.0"
        calls = tenants.calls
        # Rebuilt with the bad document meanwhile (builds happen on requests).
        until(lambda: get_document(edge).status_code == 200 and tenants.calls > calls + 1)
        response = get_document(edge)
        assert response.status_code == 200
        assert response.json() == good


def test_a_service_answering_something_else_than_a_document_counts_as_down(
    services: dict[str, tuple[DocumentService, str]],
) -> None:
    clinic, clinic_url = services["clinic"]
    clinic.document = ["not", "a", "document"]
    with serve(clinic.app, port=port_of(clinic_url)), edge_for(services) as edge:
        response = get_document(edge)
    assert response.status_code == 503
    assert "no document from clinic: not a JSON object." in response.json()["detail"]


def test_a_hung_service_is_given_up_on_within_the_timeout(
    services: dict[str, tuple[DocumentService, str]], hung_service_url: str
) -> None:
    services["clinic"] = (services["clinic"][0], hung_service_url)
    with edge_for(services, openapi_timeout=0.3) as edge:
        started = time.monotonic()
        response = get_document(edge)
    assert time.monotonic() - started < 2
    assert response.status_code == 503
    assert "no document from clinic: no answer within 0.3s." in response.json()["detail"]
