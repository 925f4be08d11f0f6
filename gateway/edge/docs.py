"""The gateway's API documentation: ``/api/openapi.json`` and the ``/api/docs/`` page.

Traefik maps those public paths to ``/gateway/openapi.json`` and ``/gateway/docs/...`` here
(gateway/traefik/dynamic/routes.yml), and these answers set their own headers. Like every
``/api/`` response (DESIGN.md section 5) they are ``Cache-Control: no-store``; the document
also carries a strong ``ETag``, so a tool that asks with ``If-None-Match`` gets a 304 when
nothing changed. The assets (Swagger UI's dist from the ``swagger-ui-bundle-v2`` package, and
the page's own script) are under a path naming their release.

Bodies are gzipped once, at start-up, for the clients that accept it (Swagger UI's bundle is
1.5 MB, 0.42 MB gzipped). The page's Content-Security-Policy allows nothing but this origin.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import PurePosixPath

from common.errors import NotFound
from fastapi import APIRouter, Request
from fastapi.responses import Response
from swagger_ui_bundle import swagger_ui_path

from edge.openapi import OpenAPIAggregate, Payload

PREFIX = "/gateway"
PUBLIC_ASSETS = "/api/docs/assets"
SWAGGER_UI_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
OWN_FILES = {"docs.js": "text/javascript; charset=utf-8"}

# DESIGN.md section 5: every /api/ response, these included.
CACHE_CONTROL = "no-store"
# Swagger UI sets inline style attributes from its script (the CSSOM, which CSP allows) and
# shows inline SVG and data: images; it loads nothing from elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class DocsAssets:
    """The page and its assets, by file name, under ``/api/docs/assets/{release}/``."""

    release: str
    page: Payload
    files: Mapping[str, Payload]


def load_assets() -> DocsAssets:
    """Read (and gzip) the docs page's files: Swagger UI's from its package, ours beside this
    module. Their release names the Swagger UI version and a digest of every file."""
    own = files("edge") / "static"
    contents = {name: (swagger_ui_path / name).read_bytes() for name in SWAGGER_UI_FILES}
    contents |= {name: (own / name).read_bytes() for name in OWN_FILES}
    digest = hashlib.sha256()
    for name in sorted(contents):
        digest.update(name.encode() + b"\0" + contents[name])
    swagger_ui_version = PurePosixPath(str(swagger_ui_path)).name.removeprefix("swagger-ui-")
    release = f"{swagger_ui_version}-{digest.hexdigest()[:10]}"
    media_types = {**SWAGGER_UI_FILES, **OWN_FILES}
    page = (own / "docs.html").read_text().replace("{assets}", f"{PUBLIC_ASSETS}/{release}")
    return DocsAssets(
        release=release,
        page=Payload.of(page.encode(), "text/html; charset=utf-8"),
        files={name: Payload.of(body, media_types[name]) for name, body in contents.items()},
    )


def _accepts_gzip(accept_encoding: str) -> bool:
    for coding in accept_encoding.lower().split(","):
        name, _, params = coding.strip().partition(";")
        if name.strip() in ("gzip", "*"):
            quality = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
            try:
                return float(quality) > 0
            except ValueError:
                return False
    return False


def respond(
    request: Request,
    payload: Payload,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """``payload`` gzipped when the client accepts it; 304 when it already holds it."""
    gzipped = payload.gzipped is not None and _accepts_gzip(
        request.headers.get("accept-encoding", "")
    )
    # Each encoding is its own representation, with its own strong validator.
    etag = f'{payload.etag[:-1]}-gzip"' if gzipped else payload.etag
    sent = {
        "Cache-Control": CACHE_CONTROL,
        "ETag": etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        **(headers or {}),
    }
    held = {
        tag.strip().removeprefix("W/")
        for tag in request.headers.get("if-none-match", "").split(",")
    }
    if etag in held or "*" in held:
        return Response(status_code=304, headers=sent)
    if gzipped and payload.gzipped is not None:
        sent["Content-Encoding"] = "gzip"
        return Response(payload.gzipped, media_type=payload.media_type, headers=sent)
    return Response(payload.body, media_type=payload.media_type, headers=sent)


router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/openapi.json/")
async def openapi_document(request: Request) -> Response:
    """The whole public API's OpenAPI document (``GET /api/openapi.json`` at the gateway)."""
    aggregate: OpenAPIAggregate = request.app.state.openapi
    return respond(request, await aggregate.document())


@router.get("/docs/")
async def docs_page(request: Request) -> Response:
    """Swagger UI over the document (``GET /api/docs/`` at the gateway)."""
    assets: DocsAssets = request.app.state.docs_assets
    return respond(request, assets.page, PAGE_HEADERS)


@router.get("/docs/assets/{release}/{name}/")
async def docs_asset(request: Request, release: str, name: str) -> Response:
    """One of the page's files; another release's is gone (the page names the current one)."""
    assets: DocsAssets = request.app.state.docs_assets
    payload = assets.files.get(name)
    if release != assets.release or payload is None:
        raise NotFound
    return respond(request, payload)
