"""common.testing.serve: the test server every service's suite talks to over real HTTP."""

import socket
import time
from urllib.parse import urlsplit

from common.testing import serve
from fastapi import FastAPI

REQUEST = b"GET /ping HTTP/1.1\r\nHost: test\r\n\r\n"


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b'"pong"'):
        chunk = sock.recv(4096)
        if not chunk:
            return data  # the server closed the connection
        data += chunk
    return data


def test_an_idle_connection_outlives_the_clients_keep_alive() -> None:
    # httpx forgets an idle connection after 5 s; the server must not close it first, or a
    # request sent at that instant meets a closing socket ("Server disconnected").
    app = FastAPI()

    @app.get("/ping")
    def ping() -> str:
        return "pong"

    with serve(app) as url:
        address = urlsplit(url)
        with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
            sock.sendall(REQUEST)
            assert _answer(sock).startswith(b"HTTP/1.1 200")
            time.sleep(5.5)
            sock.sendall(REQUEST)
            assert _answer(sock).startswith(b"HTTP/1.1 200")
