"""create_app: paths without a trailing slash and the X-Request-ID contract."""

import re
import time

import httpx
import pytest


@pytest.mark.parametrize(
    "path", ["/api/items/7", "/health/live", "/metrics", "/health", "/api/items/7/"]
)
def test_path_without_trailing_slash_is_served_without_redirect(
    client: httpx.Client, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert not response.is_redirect
    slashed = path if path.endswith("/") else path + "/"
    assert response.headers["content-type"] == client.get(slashed).headers["content-type"]


def test_post_without_trailing_slash_is_served_identically(client: httpx.Client) -> None:
    body = {"name": "a", "count": 1}
    assert (
        client.post("/api/items", json=body).json() == client.post("/api/items/", json=body).json()
    )


def test_head_is_answered_like_get_without_a_body(client: httpx.Client) -> None:
    get = client.get("/api/items/7/")
    head = client.head("/api/items/7/")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["content-type"] == get.headers["content-type"]
    assert "x-request-id" in head.headers
    # Counted under its route template, like the GET (just after the response is sent).
    sample = 'http_requests_total{method="HEAD",route="/api/items/{item_id}/",status="200"}'
    deadline = time.monotonic() + 5
    while sample not in client.get("/metrics/").text:
        assert time.monotonic() < deadline, "HEAD not counted under its route"
        time.sleep(0.05)
    # Only GET routes answer HEAD: a POST-only route still says 405, and unknown paths 404.
    assert client.head("/api/items/").status_code == 405
    assert client.head("/api/nowhere/").status_code == 404


def test_query_string_survives_the_missing_slash(client: httpx.Client) -> None:
    response = client.get("/api/items/7", params={"x": "1"})
    assert response.status_code == 200
    assert response.json() == {"id": 7}


@pytest.mark.parametrize(
    "request_id",
    ["abc-123", "x" * 128, "!~#$%&'()*+,-./:;<=>?@[]^_`{|}", "0"],
)
def test_valid_client_request_id_is_kept(client: httpx.Client, request_id: str) -> None:
    response = client.get("/api/items/1/", headers={"X-Request-ID": request_id})
    assert response.headers["X-Request-ID"] == request_id


@pytest.mark.parametrize(
    "request_id",
    [b"x" * 129, b"has space", b"tab\there", "é-accent".encode(), b""],
)
def test_invalid_client_request_id_is_replaced(client: httpx.Client, request_id: bytes) -> None:
    response = client.get("/api/items/1/", headers=[(b"X-Request-ID", request_id)])
    new_id = response.headers["X-Request-ID"]
    assert new_id.encode() != request_id
    assert re.fullmatch(r"[0-9a-f]{32}", new_id)


def test_request_id_is_created_when_absent_and_unique(client: httpx.Client) -> None:
    first = client.get("/api/items/1/").headers["X-Request-ID"]
    second = client.get("/api/items/1/").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/nowhere/", 404),
        ("DELETE", "/api/items/", 405),
        ("POST", "/api/items/", 400),
        ("GET", "/api/errors/conflict/", 409),
        ("GET", "/api/me/", 401),
        ("GET", "/api/errors/throttled/", 429),
        ("GET", "/api/errors/database/", 503),
    ],
)
def test_request_id_is_echoed_on_errors(
    client: httpx.Client, method: str, path: str, status: int
) -> None:
    response = client.request(method, path, headers={"X-Request-ID": "err-echo"}, json={})
    assert response.status_code == status
    assert response.headers["X-Request-ID"] == "err-echo"


def test_request_id_is_echoed_on_415(client: httpx.Client) -> None:
    response = client.post(
        "/api/items/", content=b"x", headers={"X-Request-ID": "r-415", "Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.headers["X-Request-ID"] == "r-415"


def test_openapi_document_is_served(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert "/api/items/{item_id}/" in response.json()["paths"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/items/7/", 200),
        ("GET", "/api/items/7", 200),
        ("HEAD", "/api/items/7/", 200),
        ("GET", "/api/items/abc/", 404),
        ("POST", "/api/items/", 400),
        ("GET", "/api/nowhere/", 404),
    ],
)
def test_every_api_response_says_no_store(
    client: httpx.Client, method: str, path: str, status: int
) -> None:
    """Patient data must not be kept by a browser's or a proxy's cache: successes and errors."""
    response = client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == status
    assert response.headers["cache-control"] == "no-store"


def test_a_refused_media_type_says_no_store_too(client: httpx.Client) -> None:
    response = client.post("/api/items/", content=b"a=1", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.headers["cache-control"] == "no-store"


def test_health_and_metrics_are_not_api_paths(client: httpx.Client) -> None:
    assert "cache-control" not in client.get("/health/").headers


def test_a_started_app_freezes_what_it_started_with_and_collects_young_objects_less_often(
    client: httpx.Client,
) -> None:
    """The app's start-up leaves its long-lived objects out of every collection (gc.freeze)
    and a higher young-generation threshold (tune_garbage_collector)."""
    import gc

    from common.app import GC_YOUNG_THRESHOLD

    assert client.get("/health/live").status_code == 200
    assert gc.get_freeze_count() > 10_000
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD


def test_the_service_serves_its_document_but_no_docs_page_of_its_own(client: httpx.Client) -> None:
    # The gateway's /api/docs/ is the one page, with its own assets (no CDN).
    assert client.get("/openapi.json/").json()["openapi"].startswith("3.1")
    for page in ("/docs/", "/redoc/"):
        assert client.get(page).status_code == 404
