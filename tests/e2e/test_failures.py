"""Failure behaviour: a hung service, a dead auth, a restarted gateway; the rest keeps serving
and everything recovers, on both backends (a paused clinic keeps its PostgreSQL connections
and transactions open; a restarted auth reconnects to its database).
"""

from typing import Any

import httpx


def test_health_names_a_hung_service_and_recovers(
    running: Any, api: Any, gateway: httpx.Client, eventually: Any
) -> None:
    _, headers = api.tenant_admin(api.create_tenant())
    assert gateway.get("/health/").status_code == 200
    running.processes.pause("clinic")
    try:
        # The gateway's /health/ answer is reused for a second (a flood must not reach the
        # services): the hung service shows once it has expired.
        eventually(lambda: gateway.get("/health/").status_code == 503, 10, "health stayed 200")
        health = gateway.get("/health/")
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "fail"
        assert body["services"]["clinic"]["status"] == "fail"
        assert body["services"]["auth"]["status"] == "pass"
        assert body["services"]["tenants"]["status"] == "pass"
        # Requests to the hung service end in a JSON 503/504 (timeout, or out of rotation) ...
        stuck = gateway.get("/api/patients/", headers=headers)
        assert stuck.status_code in {503, 504}
        assert "detail" in stuck.json()
        # ... while the other services keep serving.
        assert gateway.get("/api/auth/me/", headers=headers).status_code == 200
    finally:
        running.processes.resume("clinic")
    eventually(lambda: gateway.get("/health/").status_code == 200, 15, "health stayed 503")
    running.processes.wait_until_routed()
    assert gateway.get("/api/patients/", headers=headers).status_code == 200


def test_issued_tokens_keep_working_while_auth_is_down(
    running: Any, api: Any, gateway: httpx.Client, eventually: Any
) -> None:
    _, headers = api.tenant_admin(api.create_tenant())
    root = api.superuser()
    running.processes.kill("auth")
    try:
        assert gateway.get("/api/patients/", headers=headers).status_code == 200
        assert gateway.get("/api/tenants/", headers=root).status_code == 200
        login = gateway.post("/api/auth/login/", json={"username": "anyone", "password": "x"})
        assert login.status_code in {502, 503}
        assert "detail" in login.json()
        eventually(lambda: gateway.get("/health/").status_code == 503, 10, "health stayed 200")
        health = gateway.get("/health/")
        assert health.status_code == 503
        assert health.json()["services"]["auth"]["status"] == "fail"
    finally:
        running.processes.restart("auth")
    eventually(lambda: gateway.get("/health/").status_code == 200, 10, "health stayed 503")
    assert gateway.get("/api/auth/me/", headers=headers).status_code == 200


def test_the_gateway_serves_again_after_traefik_restarts(
    running: Any, api: Any, gateway: httpx.Client
) -> None:
    _, headers = api.tenant_admin(api.create_tenant())
    running.processes.restart("traefik")
    assert gateway.get("/health/").status_code == 200
    assert gateway.get("/api/patients/", headers=headers).status_code == 200
