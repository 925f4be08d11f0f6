"""The one middleware every request of every service passes through (pure ASGI, no Starlette
``Request``/``Response`` objects on the way: it runs on every request).

It does, in order:
- ``/x`` is served exactly like ``/x/`` (no redirect), ``HEAD`` like ``GET`` without the body;
- a body that is not JSON is refused with 415 before any route sees it;
- ``X-Request-ID``: a client's value (1-128 visible ASCII characters) is kept, else one is made;
  it is echoed on the response and available to logs (``request_id_var``);
- every ``/api/`` response carries ``Cache-Control: no-store`` (patient data must not sit in
  a browser's or a proxy's cache);
- with ``max_active_requests``, at most that many ``/api/`` requests are served at once and
  the others wait their turn, first come first served (``asyncio.Semaphore`` is fair). One event
  loop interleaves every request it has started, so with dozens in flight a request that needs
  several round trips waits behind all the others at each of them: the latency tail grew to
  5-7 times the median under load. Served a few at a time, each request waits once, in line;
- requests in flight, the request count and latency by route *template*, and one JSON access line;
- an exception no handler took is logged (with the request id) and answered with a 500 here,
  not re-raised: raised further, uvicorn would close the connection after the 500, and the
  gateway, which keeps connections alive, could send the next request (another client's POST,
  which it does not retry) on the closing one: a 502 for a valid request.

Code that must know how a request ended (the clinic's audit trail) appends a callable to
``scope["state"]["response_hooks"]``: each is called with the response's status.
"""

import asyncio
import logging
import secrets
import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.observability import (
    HTTP_IN_FLIGHT,
    HTTP_WAITING,
    KNOWN_METHODS,
    OTHER_METHOD,
    UNMATCHED_ROUTE,
    access_log,
    count_request,
    request_id_var,
    valid_request_id,
)

BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
JSON_TYPE: Final = b"application/json"
JSON_SUFFIX: Final = b"+json"
API_PREFIX: Final = "/api/"
NO_STORE: Final = (b"cache-control", b"no-store")
RESPONSE_HOOKS: Final = "response_hooks"
UNSUPPORTED_MEDIA_TYPE: Final = (
    b'{"detail":"Unsupported media type in request. Use application/json."}'
)
INTERNAL_ERROR: Final = b'{"detail":"Internal server error."}'

errors_log = logging.getLogger("dentiapro.errors")


def _json_or_empty(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request's body is JSON (``application/json`` or ``*+json``) or absent."""
    content_type = b""
    has_body = False
    for name, value in headers:
        if name == b"content-type":
            content_type = value.split(b";", 1)[0].strip().lower()
        elif name == b"content-length":
            has_body = value.strip() not in (b"0", b"")
        elif name == b"transfer-encoding":
            has_body = True
    if not content_type:
        return not has_body
    return content_type == JSON_TYPE or content_type.endswith(JSON_SUFFIX)


class ServiceMiddleware:
    """See the module docstring; ``create_app`` installs it outermost."""

    def __init__(self, app: ASGIApp, max_active_requests: int = 0) -> None:
        self.app = app
        self.turns = asyncio.Semaphore(max_active_requests) if max_active_requests else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        if not path.endswith("/"):
            path = scope["path"] = path + "/"
        request_id = ""
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        for name, value in headers:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
                break
        if not valid_request_id(request_id):
            # As unique as uuid4().hex (128 random bits, 32 hex digits), without building a UUID.
            request_id = secrets.token_hex(16)
        context_token = request_id_var.set(request_id)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        extra_headers = [(b"x-request-id", request_id.encode("latin-1"))]
        if path.startswith(API_PREFIX):
            extra_headers.append(NO_STORE)
        method: str = scope["method"]
        status = 500
        responded = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status = message["status"]
                responded = True
                message["headers"] = [
                    *(item for item in message.get("headers", ()) if item[0] != b"x-request-id"),
                    *extra_headers,
                ]
            await send(message)

        inner = scope
        if method == "HEAD":
            # Routes are declared for GET: the app sees a GET in a copy of the scope; the server
            # keeps the original (HEAD) and sends the headers without the body.
            inner = {**scope, "method": "GET"}
        HTTP_IN_FLIGHT.inc()
        try:
            if method in BODY_METHODS and not _json_or_empty(headers):
                await _send_json(send_with_headers, 415, UNSUPPORTED_MEDIA_TYPE)
            elif self.turns is not None and path.startswith(API_PREFIX):
                await self._in_turn(inner, receive, send_with_headers)
            else:
                await self.app(inner, receive, send_with_headers)
        except Exception as exc:
            if responded:  # too late for a 500: the server must close the connection
                raise
            route = getattr(inner.get("route"), "path", UNMATCHED_ROUTE)
            errors_log.error("unhandled error on %s", route, exc_info=exc)
            await _send_json(send_with_headers, 500, INTERNAL_ERROR)
        finally:
            HTTP_IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            route = getattr(inner.get("route"), "path", UNMATCHED_ROUTE)
            label = method if method in KNOWN_METHODS else OTHER_METHOD
            count_request(label, route, status, elapsed)
            for hook in state.get(RESPONSE_HOOKS, ()):
                hook(status)
            principal = state.get("principal")
            access_log.write(
                request_id,
                {
                    "method": label,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "tenant": getattr(principal, "tenant", None),
                    "user_id": getattr(principal, "user_id", None),
                },
            )
            request_id_var.reset(context_token)

    async def _in_turn(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.turns is not None
        if self.turns.locked():
            HTTP_WAITING.inc()
            try:
                await self.turns.acquire()
            finally:
                HTTP_WAITING.dec()
        else:
            await self.turns.acquire()
        try:
            await self.app(scope, receive, send)
        finally:
            self.turns.release()


async def _send_json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON_TYPE),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
