"""Each service's OpenAPI 3.1 document, true to what its routes answer (DESIGN.md section 5).

Errors are declared where they are raised:

- a dependency that raises says so with ``@raises(...)`` (``get_principal``: 401, a list's
  query: 400 and 404, ...): every route that depends on it, however deeply, documents them;
- a route declares what its own body raises with ``responses=errors(409)``;
- what the framework does is added here: 400 on a request body (validation, malformed JSON),
  413 and 415 on it (the gateway's body limit, the service's content type check), 404 on a
  path parameter (a non-numeric or out-of-range id names nothing), 503 on every ``/api/``
  operation (a database or a registry that does not answer).

``build_document`` also gives a route that depends on ``get_principal`` the bearer
``securityScheme``, removes FastAPI's 422 (never sent: ``common.errors`` answers 400), leaves
out ``/internal/`` and ``/metrics/``, and marks ``id``, ``created_at`` and ``updated_at``
``readOnly``. Field rules live in the request models, in JSON Schema beside their validators
(``trimmed_text``, ``SPACE``, ``not_null`` below help them say it exactly).
"""

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

F = TypeVar("F", bound=Callable[..., Any])

OPENAPI_VERSION = "3.1.0"
BEARER = "bearerAuth"
READ_ONLY_FIELDS = ("id", "created_at", "updated_at")
HIDDEN_PREFIXES = ("/internal/", "/metrics")
BODY_METHODS = frozenset({"post", "put", "patch"})

FIELD_ERRORS = "FieldErrors"
ERROR_DETAIL = "ErrorDetail"
_SCHEMAS: dict[str, dict[str, Any]] = {
    # DRF's validation shape: {"<field>": ["message", ...]}, "non_field_errors" for the rest.
    FIELD_ERRORS: {
        "type": "object",
        "description": 'Validation errors by field (DRF): {"<field>": ["message", ...]}.',
        "properties": {"non_field_errors": {"type": "array", "items": {"type": "string"}}},
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    },
    ERROR_DETAIL: {
        "type": "object",
        "properties": {
            "detail": {"type": "string"},
            "code": {"type": "string", "description": "token_not_valid on a bad token"},
        },
        "required": ["detail"],
    },
}

_DESCRIPTIONS = {
    400: "Invalid input",
    401: "Authentication credentials missing or not valid",
    403: "Not allowed",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "Request body too large (limit 1 MiB)",
    415: "Request body not JSON",
    429: "Throttled",
    503: "Temporarily unavailable",
}


def _header(description: str, *, required: bool) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string"}}


_HEADERS = {
    401: {"WWW-Authenticate": _header("Bearer", required=True)},
    429: {"Retry-After": _header("Seconds to wait", required=True)},
    503: {"Retry-After": _header("Seconds to wait", required=False)},
}


def error_response(status: int) -> dict[str, Any]:
    """The OpenAPI response object of an error ``status``: DRF's shapes (``common.errors``)."""
    detail = {"$ref": f"#/components/schemas/{ERROR_DETAIL}"}
    # A 400 names the fields, or (malformed JSON) gives a detail.
    schema = {"anyOf": [{"$ref": f"#/components/schemas/{FIELD_ERRORS}"}, detail]}
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS.get(status, "Error"),
        "content": {"application/json": {"schema": schema if status == 400 else detail}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route (or a router): the errors its own code raises."""
    return {status: error_response(status) for status in statuses}


def raises(*statuses: int) -> Callable[[F], F]:
    """Mark a dependency with the errors it raises: routes that depend on it document them."""

    def mark(dependency: F) -> F:
        dependency.__dict__.setdefault("_openapi_errors", set()).update(statuses)
        return dependency

    return mark


def authenticates(dependency: F) -> F:
    """Mark the dependency that verifies the bearer token (401): its routes carry the bearer
    security scheme."""
    dependency.__dict__["_openapi_authenticates"] = True
    return raises(401)(dependency)


# --- field rules as JSON Schema (the models' validators stay the one enforcement) ---


# Python's whitespace (what ``str.strip`` removes: ``str.isspace``), spelled out so that every
# regex engine (Python's, ECMA's, Rust's) reads the patterns below alike; a test checks it.
SPACES = r"\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
SPACE = f"[{SPACES}]"
NON_SPACE = f"[^{SPACES}]"


def trimmed_text(max_length: int, *, blank: bool = False) -> dict[str, Any]:
    """Text stored trimmed that must hold 1 (0 if ``blank``) to ``max_length`` characters once
    leading and trailing whitespace is gone. A pattern says it exactly: a plain maxLength
    would refuse a long value that trimming brings within bounds, and a blank one must be
    refused (so at least one non-space character)."""
    core = rf"{NON_SPACE}(?:[\s\S]{{0,{max_length - 2}}}{NON_SPACE})?"
    if blank:
        return {"type": "string", "pattern": rf"^{SPACE}*(?:{core})?{SPACE}*$"}
    return {"type": "string", "minLength": 1, "pattern": rf"^{SPACE}*{core}{SPACE}*$"}


def not_null(*fields: str) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` of a PATCH body: ``fields`` may be left out but not sent as null
    (their validators refuse it), so their schemas offer no null."""

    def drop_null(schema: dict[str, Any]) -> None:
        for name in fields:
            field = schema["properties"][name]
            options = [option for option in field.pop("anyOf", []) if option != {"type": "null"}]
            if len(options) == 1:
                field.update(options[0])
            elif options:
                field["anyOf"] = options
            field.pop("default", None)

    return drop_null


# --- the document ---


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def _declared_errors(route: RouteContext) -> set[int]:
    found: set[int] = set()
    for sub in _dependencies(route.dependant):
        found |= getattr(sub.call, "_openapi_errors", set())
    return found


def _authenticated(route: RouteContext) -> bool:
    # The token check marked ``@authenticates`` (``common.tokens.get_principal``).
    return any(
        getattr(sub.call, "_openapi_authenticates", False) for sub in _dependencies(route.dependant)
    )


def _route_errors(route: RouteContext, path: str, method: str) -> set[int]:
    statuses = _declared_errors(route)
    if "{" in path:
        statuses.add(404)
    if route.body_field is not None or method in BODY_METHODS:
        statuses |= {400, 413, 415}
    if path.startswith("/api/"):
        statuses.add(503)
    return statuses


def _mark_read_only(schemas: dict[str, Any]) -> None:
    for schema in schemas.values():
        properties = schema.get("properties", {})
        for name in READ_ONLY_FIELDS:
            if name in properties:
                properties[name]["readOnly"] = True


def build_document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with the errors, security and conventions above."""
    # Routes as FastAPI sees them once routers are included (prefixes, router dependencies).
    routes = [
        route
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
        and route.include_in_schema
        and not str(route.path_format).startswith(HIDDEN_PREFIXES)
    ]
    document = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=OPENAPI_VERSION,
        description=app.description,
        routes=routes,
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    # FastAPI's 422 is never sent: common.errors answers 400 in DRF's shape.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(_SCHEMAS)
    components["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from POST /api/auth/login/.",
        }
    }
    _mark_read_only(schemas)
    for route in routes:
        path = str(route.path_format)
        for method in route.methods or ():
            operation = document["paths"][path].get(method.lower())
            if operation is None:
                continue
            responses = operation["responses"]
            responses.pop("422", None)
            for status in sorted(_route_errors(route, path, method.lower())):
                responses.setdefault(str(status), error_response(status))
            if _authenticated(route):
                operation["security"] = [{BEARER: []}]
    return document


def install(app: FastAPI) -> None:
    """Serve ``build_document(app)`` (built once, on the first request for it)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
