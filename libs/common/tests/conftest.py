"""Fixtures for the shared library's tests: small apps built with ``common.app.create_app``."""

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from common.app import Lifespan, create_app
from common.errors import (
    AuthenticationFailed,
    Conflict,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    Throttled,
    TokenInvalid,
    ValidationFailed,
)
from common.health import HealthCheck
from common.settings import ServiceSettings
from common.testing import TestSigner, free_port, serve
from common.tokens import CurrentPrincipal, TokenVerifier
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError, ProgrammingError

SECRET_MARKER = "s3cret-stack-detail"

AppFactory = Callable[..., FastAPI]


class Item(BaseModel):
    name: str
    count: int
    seen_at: datetime | None = None


def sample_router() -> APIRouter:
    """Routes that exercise every path through the library's error handling."""
    router = APIRouter()

    @router.post("/api/items/", status_code=201)
    def create_item(item: Item) -> Item:
        return item

    @router.get("/api/items/{item_id}/")
    def get_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @router.get("/api/me/")
    def me(principal: CurrentPrincipal) -> dict[str, Any]:
        return {
            "user_id": principal.user_id,
            "tenant": principal.tenant,
            "is_superuser": principal.is_superuser,
        }

    @router.get("/api/errors/{kind}/")
    def fail(kind: str) -> None:
        errors: dict[str, Exception] = {
            "validation": ValidationFailed({"name": "Bad name.", "non_field_errors": ["A", "B"]}),
            "not_authenticated": NotAuthenticated(),
            "authentication_failed": AuthenticationFailed("No active account."),
            "token_invalid": TokenInvalid(),
            "permission_denied": PermissionDenied(),
            "not_found": NotFound(),
            "conflict": Conflict("Still referenced."),
            "throttled": Throttled(retry_after=42),
            "unavailable": ServiceUnavailable(),
            "database": OperationalError("SELECT 1", {}, Exception("server closed")),
            "query_bug": ProgrammingError("SELECT nope", {}, Exception(SECRET_MARKER)),
            "crash": RuntimeError(SECRET_MARKER),
        }
        raise errors[kind]

    return router


def build_app(
    data_dir: Path,
    *,
    routers: Sequence[APIRouter] | None = None,
    health_checks: Mapping[str, HealthCheck] | None = None,
    lifespan: Lifespan | None = None,
    token_verifier: TokenVerifier | None = None,
    **settings: Any,
) -> FastAPI:
    app = create_app(
        service="sample",
        version="9.9.9",
        settings=ServiceSettings(data_dir=data_dir, **settings),
        routers=[sample_router()] if routers is None else routers,
        lifespan=lifespan,
        health_checks=health_checks,
    )
    app.state.token_verifier = token_verifier or TestSigner().verifier()
    return app


@pytest.fixture
def make_app(tmp_path: Path) -> AppFactory:
    """Build an app the way services do; ``token_verifier`` goes on ``app.state``."""

    def make(**kwargs: Any) -> FastAPI:
        return build_app(tmp_path, **kwargs)

    return make


@pytest.fixture(scope="session")
def signer() -> TestSigner:
    return TestSigner()


@pytest.fixture(scope="module")
def sample_url(signer: TestSigner, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One sample app for the module, trusting ``signer``; its base URL."""
    app = build_app(tmp_path_factory.mktemp("sample"), token_verifier=signer.verifier())
    with serve(app) as url:
        yield url


@pytest.fixture
def client(sample_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sample_url, timeout=10) as http:
        yield http


@pytest.fixture
def unused_tcp_port() -> int:
    """A local port nothing listens on (a database server that is down)."""
    return free_port()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``configure_logging`` replaces the root handlers; put them back after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
