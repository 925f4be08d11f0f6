"""Domain errors and the one place that turns them into DRF-shaped responses.

    DomainError                      {"detail": ...}
    ├── ValidationFailed      400    {"<field>": ["message", ...]}
    ├── NotAuthenticated      401    "Authentication credentials were not provided."
    ├── AuthenticationFailed  401    any other 401 (bad credentials)
    │   └── TokenInvalid      401    {"detail": ..., "code": "token_not_valid"}
    ├── PermissionDenied      403
    ├── NotFound              404
    ├── Conflict              409
    ├── Throttled             429    with Retry-After
    └── ServiceUnavailable    503

Code raises these; ``install_error_handlers`` formats them, plus FastAPI's own validation
errors (400, never 422), malformed JSON (400), 404/405 and anything unexpected (500 without
a trace). A database that cannot be reached or cannot serve becomes 503 (``is_unavailable``).
"""

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.db import is_unavailable

log = logging.getLogger("dentiapro.errors")


class DomainError(Exception):
    status_code = 400
    default_detail = "Bad request."

    def __init__(self, detail: str | None = None, *, headers: Mapping[str, str] | None = None):
        self.detail = detail or self.default_detail
        self.headers = dict(headers or {})
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail}


class ValidationFailed(DomainError):
    status_code = 400

    def __init__(self, errors: Mapping[str, str | Sequence[str]]):
        self.errors = {
            field: [messages] if isinstance(messages, str) else list(messages)
            for field, messages in errors.items()
        }
        super().__init__(json.dumps(self.errors))

    def body(self) -> dict[str, Any]:
        return dict(self.errors)


class NotAuthenticated(DomainError):
    status_code = 401
    default_detail = "Authentication credentials were not provided."

    def __init__(self, detail: str | None = None):
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="api"'})


class AuthenticationFailed(NotAuthenticated):
    default_detail = "Incorrect authentication credentials."


class TokenInvalid(AuthenticationFailed):
    default_detail = "Given token not valid for any token type"

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, "code": "token_not_valid"}


class PermissionDenied(DomainError):
    status_code = 403
    default_detail = "You do not have permission to perform this action."


class NotFound(DomainError):
    status_code = 404
    default_detail = "Not found."


class Conflict(DomainError):
    status_code = 409
    default_detail = "The request conflicts with the current state of the resource."


class Throttled(DomainError):
    status_code = 429

    def __init__(self, retry_after: int):
        self.retry_after = max(1, int(retry_after))
        super().__init__(
            f"Request was throttled. Expected available in {self.retry_after} seconds.",
            headers={"Retry-After": str(self.retry_after)},
        )


class ServiceUnavailable(DomainError):
    status_code = 503
    default_detail = "Service temporarily unavailable, try again shortly."


DATABASE_UNAVAILABLE = "Database unavailable, try again shortly."

# Pydantic error types rendered with DRF's words, so DRF frontends show familiar messages.
_DRF_MESSAGES = {
    "missing": "This field is required.",
    "string_type": "Not a valid string.",
    "int_parsing": "A valid integer is required.",
    "int_type": "A valid integer is required.",
    "bool_parsing": "Must be a valid boolean.",
    "bool_type": "Must be a valid boolean.",
    "date_from_datetime_parsing": "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.",
    "date_parsing": "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.",
    "date_type": "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.",
    "datetime_parsing": "Datetime has wrong format. Use one of these formats instead: "
    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].",
    "datetime_from_date_parsing": "Datetime has wrong format. Use one of these formats instead: "
    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].",
    "datetime_type": "Datetime has wrong format. Use one of these formats instead: "
    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].",
    "model_attributes_type": "Invalid data. Expected a dictionary.",
    "dict_type": "Invalid data. Expected a dictionary.",
}


def _message(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    if kind in _DRF_MESSAGES:
        return _DRF_MESSAGES[kind]
    message = str(error.get("msg", "Invalid value."))
    # Our validators raise ValueError("..."): show the sentence, not pydantic's prefix.
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def validation_errors_to_fields(errors: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Turn pydantic/FastAPI errors into DRF's {field: [messages]} shape."""
    fields: dict[str, list[str]] = {}
    for error in errors:
        loc = [part for part in error.get("loc", ()) if part not in ("body", "query", "header")]
        # Nested locations ("dict", "function-after[...]") carry no field name for a client.
        named = [str(part) for part in loc if isinstance(part, str) and "[" not in part]
        field = named[0] if named else "non_field_errors"
        fields.setdefault(field, [])
        message = _message(error)
        if message not in fields[field]:
            fields[field].append(message)
    return fields


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def domain_error_response(exc: DomainError) -> JSONResponse:
    """The response for ``exc``, for code that answers outside FastAPI's exception handlers."""
    return _json(exc.status_code, exc.body(), exc.headers)


async def _domain_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return domain_error_response(exc)


async def _request_validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = error.get("ctx", {}).get("error", "invalid JSON")
            return _json(400, {"detail": f"JSON parse error - {reason}"})
        # A path parameter that does not parse (a non-numeric id) names no resource.
        if error.get("loc", ("",))[0] == "path":
            return _json(404, {"detail": NotFound.default_detail})
    # No body, or a JSON null: DRF's "No data provided." (not "expected a dictionary").
    if any(
        error.get("loc") == ("body",)
        and (error.get("type") == "missing" or error.get("input", "") is None)
        for error in errors
    ):
        return _json(400, {"non_field_errors": ["No data provided."]})
    return _json(400, validation_errors_to_fields(errors))


def allowed_methods(app: FastAPI, path: str) -> str:
    """Every method some route serves ``path`` with (Starlette's 405 names only the first
    route's), HEAD beside GET (the service middleware answers it)."""
    methods: set[str] = set()
    for route in iter_route_contexts(app.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= route.methods or set()
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        detail = NotFound.default_detail
    elif exc.status_code == 405:
        detail = "Method not allowed."
        headers["Allow"] = allowed_methods(request.app, request.url.path)
    else:
        detail = str(exc.detail)
    return _json(exc.status_code, {"detail": detail}, headers)


async def _database_error(request: Request, exc: Exception) -> Response:
    if not is_unavailable(exc):
        raise exc  # a bug, not an outage: common.middleware logs it and answers the 500
    log.warning(
        "database unavailable: %s",
        type(exc).__name__,
        extra={"path_template": _route(request)},
    )
    return _json(503, {"detail": DATABASE_UNAVAILABLE}, {"Retry-After": "5"})


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", "<unmatched>"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    # Connection-level failures (server down or refusing, a connection lost, the pool
    # exhausted, a statement timeout) are transient: 503, not 500. Other database errors are
    # bugs, re-raised to common.middleware like any other exception: it logs them and answers
    # the 500.
    for database_error in (
        sa_exc.DBAPIError,
        sa_exc.DisconnectionError,
        sa_exc.TimeoutError,
        OSError,
        TimeoutError,
    ):
        app.add_exception_handler(database_error, _database_error)
    # Any other exception reaches common.middleware, which logs it and answers the 500 (a
    # handler for Exception would run in Starlette's outermost layer, which re-raises it).
