"""The whole API's OpenAPI document and its docs page, through the gateway (issue 10).

The document is merged by the edge from the running services' own documents: it must list
every public operation of DESIGN.md section 5, none of the private ones, and every operation it
lists must be routed by the gateway. The page in a real browser: test_docs_browser.py.
"""

import re
from typing import Any

import httpx
from openapi_spec_validator import validate

# DESIGN.md section 5, path by path (the document lists each with its trailing slash).
PUBLIC_OPERATIONS = {
    "/api/auth/register/": {"post"},
    "/api/auth/login/": {"post"},
    "/api/auth/refresh/": {"post"},
    "/api/auth/logout/": {"post"},
    "/api/auth/me/": {"get"},
    "/api/auth/users/": {"get"},
    "/api/auth/users/{user_id}/": {"patch"},
    "/api/auth/invitations/": {"get", "post"},
    "/api/auth/invitations/{invitation_id}/": {"delete"},
    "/api/auth/jwks/": {"get"},
    "/api/cabinets/": {"get", "post"},
    "/api/cabinets/{cabinet_id}/": {"get", "put", "patch", "delete"},
    "/api/patients/": {"get", "post"},
    "/api/patients/{patient_id}/": {"get", "put", "patch", "delete"},
    "/api/patients/{patient_id}/export/": {"get"},
    "/api/consultations/": {"get", "post"},
    "/api/consultations/{consultation_id}/": {"get", "put", "patch", "delete"},
    "/api/audit-events/": {"get"},
    "/api/tenants/": {"get", "post"},
    "/api/tenants/{tenant_id}/": {"get", "put", "patch", "delete"},
    "/health/": {"get"},
}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def operations(document: dict[str, Any]) -> dict[str, set[str]]:
    return {path: set(item) & METHODS for path, item in document["paths"].items()}


def test_openapi_document_lists_every_public_operation_and_nothing_private(
    gateway: httpx.Client,
) -> None:
    response = gateway.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    document = response.json()
    validate(document)  # OpenAPI 3.1, every $ref resolving
    assert document["info"]["title"] == "DentiaPro API"
    assert document["servers"] == [{"url": "/"}]
    assert operations(document) == PUBLIC_OPERATIONS
    for path in document["paths"]:
        assert "internal" not in path.split("/"), path
        assert not path.startswith(("/metrics", "/health/live", "/errors", "/gateway")), path
    for item in document["paths"].values():
        for method in set(item) & METHODS:
            assert "422" not in item[method]["responses"]
    assert "HTTPValidationError" not in document["components"].get("schemas", {})
    # The path without the slash is the same document; a client that holds it gets a 304.
    assert gateway.get("/api/openapi.json/").content == response.content
    held = {"If-None-Match": response.headers["etag"]}
    assert gateway.get("/api/openapi.json", headers=held).status_code == 304


def test_every_documented_operation_is_routed_by_the_gateway(gateway: httpx.Client) -> None:
    """Without a token, a routed operation is the token check's 401, a 400 for an empty body,
    or a 200 (JWKS, health): never the gateway's 404 for what it does not route."""
    document = gateway.get("/api/openapi.json").json()
    for path, methods in operations(document).items():
        url = re.sub(r"\{[^}]+\}", "1", path)
        for method in methods:
            body = {"json": {}} if method in {"post", "put", "patch"} else {}
            response = gateway.request(method.upper(), url, **body)
            assert response.status_code in {200, 400, 401}, (method, path, response.text)


def test_docs_page_and_its_assets_are_served_by_the_gateway(gateway: httpx.Client) -> None:
    page = gateway.get("/api/docs/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    urls = re.findall(r'(?:href|src)="([^"]+)"', page.text)
    assert {url.rsplit("/", 1)[1] for url in urls} == {
        "swagger-ui.css",
        "favicon-32x32.png",
        "swagger-ui-bundle.js",
        "docs.js",
    }
    for url in urls:
        assert url.startswith("/api/docs/assets/"), url  # nothing from another host
        response = gateway.get(url)
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == "no-store"
    assert gateway.get("/api/docs").text == page.text
