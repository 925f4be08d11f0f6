"""The edge's docs page (``/api/docs/`` at the gateway, ``/gateway/docs/`` here) and its
assets over real HTTP; the page in a real browser is tests/e2e/test_docs_browser.py."""

import re
from collections.abc import Iterator

import httpx
import pytest
from common.testing import serve
from edge.docs import CONTENT_SECURITY_POLICY
from edge.main import create_app
from edge.settings import EdgeSettings
from swagger_ui_bundle import swagger_ui_path


@pytest.fixture(scope="module")
def edge() -> Iterator[str]:
    # The page needs no service: only /api/openapi.json does, and the browser fetches it.
    with serve(create_app(EdgeSettings())) as url:
        yield url


def asset_urls(page: str) -> list[str]:
    return re.findall(r'(?:href|src)="([^"]+)"', page)


def test_docs_page_is_swagger_ui_over_the_gateway_document(edge: str) -> None:
    response = httpx.get(f"{edge}/gateway/docs/", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert 'data-openapi-url="/api/openapi.json"' in response.text
    assert "<script>" not in response.text  # no inline script: CSP allows 'self' only
    # The path without its slash is the same page (no redirect), as every path here.
    assert httpx.get(f"{edge}/gateway/docs", timeout=10).text == response.text


def test_docs_assets_are_served_from_the_package_and_cached_for_good(edge: str) -> None:
    page = httpx.get(f"{edge}/gateway/docs/", timeout=10).text
    urls = asset_urls(page)
    assert len(urls) == 4
    version = swagger_ui_path.name.removeprefix("swagger-ui-")
    for url in urls:
        assert url.startswith(f"/api/docs/assets/{version}-")  # absolute: /api/docs works too
        response = httpx.get(edge + url.replace("/api/", "/gateway/", 1), timeout=10)
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["etag"]
    bundle = next(url for url in urls if url.endswith("/swagger-ui-bundle.js"))
    response = httpx.get(
        edge + bundle.replace("/api/", "/gateway/", 1),
        headers={"Accept-Encoding": "identity"},
        timeout=10,
    )
    assert response.content == (swagger_ui_path / "swagger-ui-bundle.js").read_bytes()
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    head = httpx.head(edge + bundle.replace("/api/", "/gateway/", 1), timeout=10)
    assert head.status_code == 200
    assert head.content == b""


@pytest.mark.parametrize(
    "path",
    [
        "/gateway/docs/assets/0.0.1-0000000000/swagger-ui-bundle.js",  # another release
        "/gateway/docs/assets/{release}/index.html",  # not one of the page's files
        "/gateway/docs/assets/{release}/..%2Fdocs.html",
        "/gateway/docs/assets/{release}/",
    ],
)
def test_anything_else_under_assets_is_a_json_404(edge: str, path: str) -> None:
    page = httpx.get(f"{edge}/gateway/docs/", timeout=10).text
    release = asset_urls(page)[0].split("/")[4]
    response = httpx.get(edge + path.replace("{release}", release), timeout=10)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
