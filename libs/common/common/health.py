"""``/health/`` (readiness) and ``/health/live`` (liveness), in the shape of DESIGN.md s.6."""

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

# A check receives the app and returns (or, async, resolves to) nothing when healthy; it raises
# when not. A synchronous check must not block: it runs on the event loop.
HealthCheck = Callable[[FastAPI], Awaitable[object] | object]


async def _call(app: FastAPI, check: HealthCheck) -> None:
    result = check(app)
    if inspect.isawaitable(result):
        await result


async def _run_check(app: FastAPI, check: HealthCheck, timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        # The timeout bounds a hung database: /health/ answers within it whatever happens.
        await asyncio.wait_for(_call(app, check), timeout)
    except TimeoutError:
        return {"status": "fail", "output": f"timed out after {timeout:g}s"}
    except Exception as exc:
        return {"status": "fail", "output": type(exc).__name__}
    return {"status": "pass", "time_ms": round((time.perf_counter() - started) * 1000, 2)}


_CHECK = {
    "type": "object",
    "properties": {
        "status": {"enum": ["pass", "fail"]},
        "time_ms": {"type": "number"},
        "output": {"type": "string"},
    },
    "required": ["status"],
}
_REPORT = {
    "type": "object",
    "properties": {
        "status": {"enum": ["pass", "fail"]},
        "service": {"type": "string"},
        "version": {"type": "string"},
        "checks": {"type": "object", "additionalProperties": _CHECK},
    },
    "required": ["status", "service", "version", "checks"],
}
HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Every check passes",
        "content": {"application/json": {"schema": _REPORT}},
    },
    503: {
        "description": "A check fails (the body says which)",
        "content": {"application/json": {"schema": _REPORT}},
    },
}


def health_router(
    service: str, version: str, checks: Mapping[str, HealthCheck], timeout: float
) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get(
        "/health/",
        summary="Readiness: the service and its dependencies",
        responses=HEALTH_RESPONSES,
    )
    async def health(request: Request) -> JSONResponse:
        names = list(checks)
        results = await asyncio.gather(
            *(_run_check(request.app, checks[name], timeout) for name in names)
        )
        report = dict(zip(names, results, strict=True))
        healthy = all(result["status"] == "pass" for result in results)
        body = {
            "status": "pass" if healthy else "fail",
            "service": service,
            "version": version,
            "checks": report,
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    @router.get("/health/live/", summary="Liveness: the process answers")
    async def live() -> dict[str, str]:
        return {"status": "pass", "service": service}

    return router
