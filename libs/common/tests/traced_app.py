"""A small service for the tracing tests, run as its own process (tracing is per process):
``uvicorn traced_app:create_app --factory --app-dir libs/common/tests``.

``/api/hop/`` calls this same service's ``/api/rows/`` over HTTP (the next hop), which reads its
SQLite database: a request makes a server span, a client span, a second server span and a
statement span, and two access lines.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from common.app import create_app as create_service_app
from common.db import create_async_db_engine
from common.settings import ServiceSettings
from fastapi import APIRouter, FastAPI, Request
from sqlalchemy import text


def create_app() -> FastAPI:
    data_dir = Path(os.environ["DENTIAPRO_DATA_DIR"])
    router = APIRouter()

    @router.get("/api/hop/")
    async def hop(request: Request) -> dict[str, int]:
        client: httpx.AsyncClient = request.app.state.http
        response = await client.get(f"{os.environ['SELF_URL']}/api/rows/")
        return {"rows": response.json()["rows"]}

    @router.get("/api/rows/")
    async def rows(request: Request) -> dict[str, int]:
        async with request.app.state.engine.connect() as connection:
            return {"rows": (await connection.execute(text("SELECT 1"))).scalar_one()}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = create_async_db_engine(f"sqlite:///{data_dir / 'traced.db'}")
        async with httpx.AsyncClient(timeout=5) as client:
            app.state.http = client
            yield
        await app.state.engine.dispose()

    return create_service_app(
        service="traced",
        version="1.2.3",
        settings=ServiceSettings(data_dir=data_dir),
        routers=[router],
        lifespan=lifespan,
    )
