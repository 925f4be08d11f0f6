"""common.clients.internal_client: the services' calls to each other over kept-alive HTTP."""

import asyncio

from common.clients import KEEPALIVE_EXPIRY, internal_client
from common.testing import serve
from fastapi import FastAPI, Request

UVICORN_KEEPALIVE = 5.0  # uvicorn's default, which the services run with


def _peer_port_app() -> FastAPI:
    app = FastAPI()

    @app.get("/port")
    def port(request: Request) -> int:
        assert request.client is not None
        return request.client.port

    return app


def test_an_idle_connection_is_dropped_before_the_service_would_close_it() -> None:
    assert KEEPALIVE_EXPIRY < UVICORN_KEEPALIVE

    async def ports(url: str) -> list[int]:
        async with internal_client(timeout=5) as client:
            first = (await client.get(f"{url}/port")).json()
            again = (await client.get(f"{url}/port")).json()
            # Idle past the client's expiry, still short of uvicorn's: a new connection, never
            # one the service may be closing at this very instant.
            await asyncio.sleep(UVICORN_KEEPALIVE - 0.5)
            after_idle = (await client.get(f"{url}/port")).json()
            return [first, again, after_idle]

    with serve(_peer_port_app()) as url:
        first, again, after_idle = asyncio.run(ports(url))
    assert first == again  # kept alive between calls in quick succession
    assert after_idle != first


def test_headers_and_timeout_are_the_callers() -> None:
    client = internal_client(timeout=2.5, headers={"X-Internal-Token": "t"})
    assert client.headers["X-Internal-Token"] == "t"
    assert client.timeout.read == 2.5
    asyncio.run(client.aclose())
