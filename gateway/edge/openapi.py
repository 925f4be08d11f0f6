"""The whole public API's OpenAPI document, merged from the services' own documents.

``merge`` is pure: each service's document (fetched from its private ``/openapi.json/``) loses
what the gateway does not serve publicly (``/internal/``, ``/metrics/``, the service's own
``/health/``) and FastAPI's 422 leftovers; the gateway's aggregated ``/health/`` is added;
components are merged (identical same-name definitions once, different ones each renamed with
its service's prefix, ``$ref``s rewritten); and every ``$ref`` must resolve, or ``MergeError``.

``OpenAPIAggregate`` fetches and merges, keeps the answer, rebuilds it in the background once
it is ``openapi_cache_seconds`` old (sooner after a service failed to answer), and keeps each
service's last good document, so a service that is down never makes the document lose its
paths: before any service ever answered, it raises ``ServiceUnavailable`` naming those missing.
"""

import asyncio
import copy
import gzip
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NotRequired

import httpx
from common.errors import ServiceUnavailable
from pydantic import TypeAdapter
from typing_extensions import TypedDict

from edge.settings import EdgeSettings

log = logging.getLogger("dentiapro.edge.openapi")

Json = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
TITLE = "DentiaPro API"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# After a failed fetch or merge the document is rebuilt this soon (at most the cache time).
RETRY_SECONDS = 5.0
REF_PREFIX = "#/components/"
DESCRIPTION = """\
The whole public API of DentiaPro, as served by its gateway. Merged from the services' own
documents, so it cannot drift from the code.

**Authentication.** `POST /api/auth/login/` returns an `access` token (5 minutes) and a
`refresh` token; send `Authorization: Bearer <access>` on every protected operation (the
*Authorize* button here) and renew it with `POST /api/auth/refresh/`.

**Errors** have Django REST Framework's shapes: validation errors `400 {"field": ["message"]}`
(`non_field_errors` for the others), everything else `{"detail": "message"}`; an invalid token
adds `"code": "token_not_valid"`. Lists are paginated as `{count, next, previous, results}`.
"""


class MergeError(ValueError):
    """The services' documents cannot be merged into one truthful document."""


# The gateway's /health/ (the edge's aggregate, plus the gateway's own signing-key check).
class HealthCheck(TypedDict):
    status: Literal["pass", "fail"]
    time_ms: NotRequired[float]
    output: NotRequired[str]


class ServiceHealthChecks(TypedDict):
    auth: HealthCheck
    clinic: HealthCheck
    tenants: HealthCheck


class GatewayHealthChecks(TypedDict):
    jwks: HealthCheck


class GatewayHealth(TypedDict):
    status: Literal["pass", "fail"]
    version: str
    services: ServiceHealthChecks
    checks: GatewayHealthChecks


def health_path() -> tuple[Json, Json]:
    """The path item of the gateway's ``/health/`` and the schemas it refers to."""
    schema = TypeAdapter(GatewayHealth).json_schema(ref_template=REF_PREFIX + "schemas/{model}")
    schemas: Json = schema.pop("$defs", {})
    schemas["GatewayHealth"] = schema
    content = {"application/json": {"schema": {"$ref": REF_PREFIX + "schemas/GatewayHealth"}}}
    item = {
        "get": {
            "tags": ["health"],
            "summary": "Readiness of every service behind the gateway",
            "description": "Every service's `/health/`, checked concurrently within a "
            "timeout, and whether the gateway holds auth's signing keys. Unauthenticated.",
            "operationId": "gateway_health",
            "responses": {
                "200": {"description": "Every service and check passes.", "content": content},
                "503": {
                    "description": "A service or check fails: `status` is `fail`, and so is "
                    "each failing one, with an `output` saying why.",
                    "content": content,
                },
            },
        }
    }
    return item, schemas


def _is_public(path: str) -> bool:
    segments = path.strip("/").split("/")
    return segments[0] == "api" and "internal" not in segments


def _operations(path_item: Json) -> Iterator[Json]:
    for method in METHODS:
        operation = path_item.get(method)
        if isinstance(operation, dict):
            yield operation


def _walk_refs(node: Any) -> Iterator[str]:
    """Every reference under ``node``: ``$ref`` values, and a discriminator's mapping."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            elif key == "discriminator" and isinstance(value, dict):
                yield from (v for v in value.get("mapping", {}).values() if isinstance(v, str))
            else:
                yield from _walk_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_refs(item)


def _security_names(node: Any) -> Iterator[str]:
    """Security schemes named by the ``security`` requirements under ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "security" and isinstance(value, list) and _is_requirement_list(value):
                for requirement in value:
                    yield from requirement
            else:
                yield from _security_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from _security_names(item)


Key = tuple[str, str]  # (component kind, name)


def _component_key(ref: str) -> Key | None:
    if not ref.startswith(REF_PREFIX):
        return None
    kind, _, name = ref[len(REF_PREFIX) :].partition("/")
    return (kind, name) if name and "/" not in name else None


def _references(node: Any) -> set[Key]:
    keys = {key for ref in _walk_refs(node) if (key := _component_key(ref)) is not None}
    return keys | {("securitySchemes", name) for name in _security_names(node)}


def _rewrite(node: Any, renames: Mapping[Key, str]) -> Any:
    """``node`` with its component ``$ref``s and security requirements renamed."""
    if isinstance(node, list):
        return [_rewrite(item, renames) for item in node]
    if not isinstance(node, dict):
        return node

    def renamed(ref: str) -> str:
        target = _component_key(ref)
        if target is None or target not in renames:
            return ref
        return f"{REF_PREFIX}{target[0]}/{renames[target]}"

    rewritten: Json = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            rewritten[key] = renamed(value)
        elif key == "discriminator" and isinstance(value, dict):
            mapping = {
                k: renamed(v) if isinstance(v, str) else v
                for k, v in value.get("mapping", {}).items()
            }
            rewritten[key] = {**value, "mapping": mapping} if "mapping" in value else dict(value)
        elif key == "security" and isinstance(value, list) and _is_requirement_list(value):
            rewritten[key] = [
                {renames.get(("securitySchemes", name), name): scopes for name, scopes in r.items()}
                for r in value
            ]
        else:
            rewritten[key] = _rewrite(value, renames)
    return rewritten


def _is_requirement_list(value: list[Any]) -> bool:
    return all(isinstance(r, dict) and all(isinstance(s, list) for s in r.values()) for r in value)


def _resolve(document: Json, ref: str) -> bool:
    """Whether the local JSON pointer ``ref`` points at something in ``document``."""
    if not ref.startswith("#/"):
        return False
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def unresolved_refs(document: Json) -> list[str]:
    """The ``$ref``s and security scheme names of ``document`` that point at nothing."""
    missing = sorted({ref for ref in _walk_refs(document) if not _resolve(document, ref)})
    schemes = document.get("components", {}).get("securitySchemes", {})
    names = set(_security_names(document.get("paths", {})))
    return missing + sorted(f"security: {n}" for n in names if n not in schemes)


def _public_part(service: str, document: Mapping[str, Any]) -> Json:
    """``document`` reduced to what the gateway serves publicly, checked on its own."""
    if not str(document.get("openapi", "")).startswith("3.1."):
        raise MergeError(f"{service}: not an OpenAPI 3.1 document")
    if not isinstance(document.get("paths"), dict):
        raise MergeError(f"{service}: the document has no paths")
    if missing := unresolved_refs(dict(document)):
        raise MergeError(f"{service}: unresolved references {', '.join(missing)}")
    part = copy.deepcopy(dict(document))
    # A document-wide requirement would apply to every service's operations once merged:
    # each of this service's operations carries it instead.
    default_security = part.pop("security", None)
    paths: Json = {}
    for path, item in part["paths"].items():
        if not _is_public(path):
            continue
        for operation in _operations(item):
            # FastAPI's 422 never happens (DRF's 400 instead, common.errors).
            operation.get("responses", {}).pop("422", None)
            if default_security is not None and "security" not in operation:
                operation["security"] = copy.deepcopy(default_security)
        paths[path] = item
    part["paths"] = paths
    return part


def _reachable(paths: Json, components: Json) -> set[Key]:
    """The components the paths refer to, directly or through other components."""
    seen: set[Key] = set()
    pending = list(_references(paths))
    while pending:
        key = pending.pop()
        if key in seen:
            continue
        seen.add(key)
        kind, name = key
        pending.extend(_references(components.get(kind, {}).get(name)))
    return seen


def _prefixed(service: str, name: str) -> str:
    return service[:1].upper() + service[1:] + name


def merge(documents: Mapping[str, Mapping[str, Any]], *, version: str) -> Json:
    """One document of the public API from the services' documents (by service name, in the
    order their paths are listed). Raises ``MergeError`` when that cannot be done truthfully:
    a path documented by two services, an unresolved ``$ref``, a duplicate ``operationId``."""
    parts = {service: _public_part(service, document) for service, document in documents.items()}
    health, health_schemas = health_path()
    parts["gateway"] = {"paths": {"/health/": health}, "components": {"schemas": health_schemas}}

    # Same-name definitions, by (kind, name), then by service.
    definitions: dict[Key, dict[str, Any]] = {}
    for service, part in parts.items():
        for kind, named in part.get("components", {}).items():
            for name, value in named.items():
                definitions.setdefault((kind, name), {})[service] = value

    def canonical(value: Any) -> str:
        return json.dumps(value, sort_keys=True)

    conflicting = {
        key for key, by in definitions.items() if len({canonical(v) for v in by.values()}) > 1
    }
    # Textually identical definitions that refer to a conflicting name differ all the same.
    changed = True
    while changed:
        changed = False
        for key, by in definitions.items():
            if (
                key not in conflicting
                and len(by) > 1
                and any(_references(value) & conflicting for value in by.values())
            ):
                conflicting.add(key)
                changed = True

    renames: dict[str, dict[Key, str]] = {service: {} for service in parts}
    components: dict[str, Json] = {}
    for key, by in definitions.items():
        kind, name = key
        for service in by:
            new_name = _prefixed(service, name) if key in conflicting else name
            if key in conflicting:
                if (kind, new_name) in definitions:
                    raise MergeError(f"{service}: cannot rename {kind} {name} to {new_name}")
                renames[service][key] = new_name
            components.setdefault(kind, {}).setdefault(new_name, None)
    for service, part in parts.items():
        rewritten = _rewrite(part, renames[service])
        for kind, named in rewritten.get("components", {}).items():
            for name, value in named.items():
                components[kind][renames[service].get((kind, name), name)] = value
        parts[service] = rewritten

    paths: Json = {}
    owner: dict[str, str] = {}
    tags: dict[str, Json] = {}
    for service, part in parts.items():
        for path, item in part["paths"].items():
            if path in paths:
                raise MergeError(f"{path} is documented by both {owner[path]} and {service}")
            paths[path], owner[path] = item, service
        for tag in part.get("tags", ()):
            tags.setdefault(tag["name"], tag)

    operation_ids: dict[str, str] = {}
    for path, item in paths.items():
        for operation in _operations(item):
            if (operation_id := operation.get("operationId")) is None:
                continue
            if operation_id in operation_ids:
                raise MergeError(
                    f"operationId {operation_id} is used by {operation_ids[operation_id]} and {path}"
                )
            operation_ids[operation_id] = path

    # What no public operation refers to anymore (FastAPI's HTTPValidationError, the schemas of
    # dropped paths) goes; security schemes stay: they are what the docs page authorizes with.
    reachable = _reachable(paths, components)
    kept = {
        kind: {
            name: components[kind][name]
            for name in sorted(named)
            if kind == "securitySchemes" or (kind, name) in reachable
        }
        for kind, named in components.items()
    }
    merged: Json = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": TITLE,
            "version": version,
            "description": DESCRIPTION,
            "x-service-versions": {
                service: str(document.get("info", {}).get("version", ""))
                for service, document in documents.items()
            },
        },
        # Relative to the page's origin: "try it out" calls the gateway that served the page.
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {kind: named for kind, named in kept.items() if named},
    }
    if tags:
        merged["tags"] = list(tags.values())
    if missing := unresolved_refs(merged):
        raise MergeError(f"unresolved references {', '.join(missing)}")
    return merged


@dataclass(frozen=True, slots=True)
class Payload:
    """A response body as served: its bytes, gzipped once (text only: images are compressed
    already), and a strong ``ETag``."""

    body: bytes
    gzipped: bytes | None
    etag: str
    media_type: str

    @classmethod
    def of(cls, body: bytes, media_type: str) -> "Payload":
        digest = hashlib.sha256(body).hexdigest()[:32]
        gzipped = None if media_type.startswith("image/") else gzip.compress(body, mtime=0)
        return cls(body, gzipped, f'"{digest}"', media_type)


async def _fetch(client: httpx.AsyncClient, url: str, timeout: float) -> Json | str:
    """A service's own document, or why there is none."""
    try:
        request = client.get(f"{url.rstrip('/')}/openapi.json/", timeout=timeout)
        response = await asyncio.wait_for(request, timeout)
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except httpx.HTTPError as exc:
        return f"unreachable ({type(exc).__name__})"
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    try:
        document = response.json()
    except ValueError:
        return "not JSON"
    return document if isinstance(document, dict) else "not a JSON object"


class OpenAPIAggregate:
    """The merged document, rebuilt in the background when it is old (one build at a time)."""

    def __init__(self, client: httpx.AsyncClient, settings: EdgeSettings, version: str) -> None:
        self._client = client
        self._settings = settings
        self._version = version
        self._documents: dict[str, Json] = {}  # each service's last good document
        self._published: Payload | None = None
        self._failure = "not built yet"
        self._complete = False  # every service answered, and the merge succeeded
        self._built_at = float("-inf")
        self._pending: asyncio.Task[None] | None = None

    async def document(self) -> Payload:
        """The merged document; ``ServiceUnavailable`` while there has never been one."""
        lifetime = self._settings.openapi_cache_seconds
        if not self._complete:
            lifetime = min(lifetime, RETRY_SECONDS)
        if time.monotonic() - self._built_at >= lifetime:
            if self._pending is None:
                self._pending = asyncio.create_task(self._build())
            if self._published is None:
                # Shielded: one caller going away must not cancel the build others wait for.
                await asyncio.shield(self._pending)
        if self._published is None:
            raise ServiceUnavailable(
                f"API description unavailable: {self._failure}. Try again shortly.",
                headers={"Retry-After": str(int(RETRY_SECONDS))},
            )
        return self._published

    async def _build(self) -> None:
        try:
            upstreams = self._settings.upstreams
            timeout = self._settings.openapi_timeout
            fetched = await asyncio.gather(
                *(_fetch(self._client, url, timeout) for url in upstreams.values())
            )
            failures: dict[str, str] = {}
            for name, result in zip(upstreams, fetched, strict=True):
                if isinstance(result, str):
                    failures[name] = result
                else:
                    self._documents[name] = result
            for name, why in failures.items():
                kept = "its last document kept" if name in self._documents else "none kept yet"
                log.warning("openapi.json of %s: %s (%s)", name, why, kept)
            missing = [name for name in upstreams if name not in self._documents]
            if missing:
                self._failure = "no document from " + "; ".join(
                    f"{name}: {failures[name]}" for name in missing
                )
                self._complete = False
                return
            try:
                merged = merge(
                    {name: self._documents[name] for name in upstreams}, version=self._version
                )
            except MergeError as exc:
                log.error("the services' OpenAPI documents do not merge: %s", exc)
                self._failure = f"the services' documents do not merge ({exc})"
                self._complete = False
                return
            except Exception:
                # A document of an unexpected shape (a path item that is not an object, ...):
                # this public endpoint answers 503 (or its last good document), never a 500.
                log.exception("the services' OpenAPI documents do not merge")
                self._failure = "the services' documents do not merge (malformed document)"
                self._complete = False
                return
            body = json.dumps(merged, separators=(",", ":")).encode()
            self._published = Payload.of(body, "application/json")
            self._complete = not failures
        finally:
            self._built_at = time.monotonic()
            self._pending = None
