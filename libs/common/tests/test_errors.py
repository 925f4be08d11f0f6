"""Error shapes: every error leaves the service in DRF's shape, never FastAPI's 422 or a trace."""

import logging
import socket
from urllib.parse import urlsplit

import httpx
import pytest
from common.observability import request_id_var

SECRET_MARKER = "s3cret-stack-detail"


def test_missing_and_invalid_fields_are_a_400_field_list(client: httpx.Client) -> None:
    response = client.post("/api/items/", json={"count": "many", "seen_at": "yesterday"})
    assert response.status_code == 400
    assert response.json() == {
        "name": ["This field is required."],
        "count": ["A valid integer is required."],
        "seen_at": [
            "Datetime has wrong format. Use one of these formats instead: "
            "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
        ],
    }


def test_valid_body_is_accepted_and_unknown_fields_ignored(client: httpx.Client) -> None:
    response = client.post("/api/items/", json={"name": "a", "count": 2, "extra": True})
    assert response.status_code == 201
    assert response.json() == {"name": "a", "count": 2, "seen_at": None}


def test_wrong_string_type_has_drf_message(client: httpx.Client) -> None:
    response = client.post("/api/items/", json={"name": 3, "count": 1})
    assert response.status_code == 400
    assert response.json() == {"name": ["Not a valid string."]}


def test_json_that_is_not_an_object_is_a_400(client: httpx.Client) -> None:
    response = client.post("/api/items/", json=[1, 2])
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Invalid data. Expected a dictionary."]}


def test_malformed_json_is_a_400(client: httpx.Client) -> None:
    response = client.post(
        "/api/items/", content=b'{"name": "a",', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert set(response.json()) == {"detail"}
    assert response.json()["detail"].startswith("JSON parse error")


def test_empty_json_body_is_a_400(client: httpx.Client) -> None:
    response = client.post("/api/items/", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["No data provided."]}


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_non_json_body_is_a_415(client: httpx.Client, content_type: str) -> None:
    response = client.post(
        "/api/items/", content=b"name=a&count=1", headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    assert response.json() == {"detail": "Unsupported media type in request. Use application/json."}


def test_body_without_content_type_is_a_415(client: httpx.Client) -> None:
    response = client.post("/api/items/", content=b'{"name": "a", "count": 1}')
    assert response.status_code == 415


def test_json_with_charset_and_json_suffix_types_are_accepted(client: httpx.Client) -> None:
    body = b'{"name": "a", "count": 1}'
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = client.post("/api/items/", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 201, content_type


def test_unknown_path_is_a_json_404(client: httpx.Client) -> None:
    response = client.get("/api/nothing-here/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_wrong_method_is_a_json_405(client: httpx.Client) -> None:
    response = client.delete("/api/items/")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method not allowed."}
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"POST"}


def test_non_numeric_path_id_is_a_404(client: httpx.Client) -> None:
    response = client.get("/api/items/abc/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [
        ("validation", 400, {"name": ["Bad name."], "non_field_errors": ["A", "B"]}),
        (
            "permission_denied",
            403,
            {"detail": "You do not have permission to perform this action."},
        ),
        ("not_found", 404, {"detail": "Not found."}),
        ("conflict", 409, {"detail": "Still referenced."}),
        ("unavailable", 503, {"detail": "Service temporarily unavailable, try again shortly."}),
        ("database", 503, {"detail": "Database unavailable, try again shortly."}),
    ],
)
def test_domain_errors_have_their_status_and_shape(
    client: httpx.Client, kind: str, status: int, body: dict[str, object]
) -> None:
    response = client.get(f"/api/errors/{kind}/")
    assert response.status_code == status
    assert response.json() == body
    assert "www-authenticate" not in response.headers


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("not_authenticated", {"detail": "Authentication credentials were not provided."}),
        ("authentication_failed", {"detail": "No active account."}),
        (
            "token_invalid",
            {"detail": "Given token not valid for any token type", "code": "token_not_valid"},
        ),
    ],
)
def test_401s_carry_www_authenticate_bearer(
    client: httpx.Client, kind: str, body: dict[str, str]
) -> None:
    response = client.get(f"/api/errors/{kind}/")
    assert response.status_code == 401
    assert response.json() == body
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_throttled_is_a_429_with_retry_after(client: httpx.Client) -> None:
    response = client.get("/api/errors/throttled/")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "42"
    assert response.json() == {"detail": "Request was throttled. Expected available in 42 seconds."}


def test_unexpected_exception_is_a_500_without_trace(client: httpx.Client) -> None:
    response = client.get("/api/errors/crash/", headers={"X-Request-ID": "crash-1"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error."}
    assert SECRET_MARKER not in response.text
    assert "Traceback" not in response.text
    assert response.headers["X-Request-ID"] == "crash-1"
    assert response.headers["Cache-Control"] == "no-store"


def test_a_database_error_that_is_no_outage_is_a_500_like_any_bug(client: httpx.Client) -> None:
    response = client.get("/api/errors/query_bug/", headers={"X-Request-ID": "bug-1"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error."}
    assert SECRET_MARKER not in response.text
    assert response.headers["X-Request-ID"] == "bug-1"
    assert response.headers["Cache-Control"] == "no-store"


def _exchange(sock: socket.socket, path: str) -> bytes:
    """One request on a kept-alive connection; its whole response, or b"" if the server
    closed the connection instead."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data


def _length(response: bytes) -> int:
    for line in response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_a_500_leaves_the_connection_open_for_the_next_request(sample_url: str) -> None:
    # The gateway keeps connections alive and does not retry a POST: a connection the service
    # closed after a 500 could fail another client's next request with a 502.
    address = urlsplit(sample_url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        assert _exchange(sock, "/api/errors/crash/").startswith(b"HTTP/1.1 500")
        assert _exchange(sock, "/api/errors/throttled/").startswith(b"HTTP/1.1 429")


def test_an_unexpected_error_is_logged_with_its_request_id(client: httpx.Client) -> None:
    seen: list[str] = []

    class RequestIds(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(request_id_var.get())

    handler = RequestIds(level=logging.ERROR)
    errors_log = logging.getLogger("dentiapro.errors")
    errors_log.addHandler(handler)
    try:
        client.get("/api/errors/crash/", headers={"X-Request-ID": "crash-2"})
    finally:
        errors_log.removeHandler(handler)
    assert seen == ["crash-2"]
