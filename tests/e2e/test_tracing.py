"""Tracing across every hop (DESIGN.md section 6), with the whole system as real processes.

One system, on SQLite, started with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a local OTLP
receiver (common.testing.OtlpReceiver): Traefik and the four Python processes export their spans
to it. A request through the gateway is ONE trace: Traefik's spans, then the service's, and the
service's own calls (auth to tenants, the edge's /health/ fan-out), each hop the child of the
one before; the service's access line carries that trace's id.
"""

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import system as launcher  # scripts/system.py (conftest puts scripts/ on the path)
import yaml
from common.testing import OtlpReceiver, ReceivedSpan

SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
# Traefik records the request id it was sent (tracing.capturedRequestHeaders in traefik.yml).
REQUEST_ID_ATTRIBUTE = "http.request.header.x-request-id"


@dataclass
class TracedSystem:
    processes: launcher.System
    receiver: OtlpReceiver
    token: str

    def access_line(self, service: str, **fields: str) -> dict[str, Any]:
        """``service``'s access line with these ``fields`` (each follows its response)."""
        log = self.processes.log_dir
        assert log is not None
        deadline = time.monotonic() + 10
        while True:
            for line in (log / f"{service}.log").read_text().splitlines():
                if line.startswith("{"):
                    entry: dict[str, Any] = json.loads(line)
                    if entry["logger"] == "dentiapro.access" and fields.items() <= entry.items():
                        return entry
            assert time.monotonic() < deadline, f"no access line with {fields} in {service}"
            time.sleep(0.1)

    def trace_of(self, request_id: str, services: set[str]) -> list[ReceivedSpan]:
        """The one trace Traefik started for ``request_id``, once it holds a server span of
        each of ``services``."""

        def gateway_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
            return [
                s
                for s in spans
                if s.service == "traefik" and s.attributes.get(REQUEST_ID_ATTRIBUTE) == [request_id]
            ]

        def complete(spans: list[ReceivedSpan]) -> bool:
            trace_ids = {s.trace_id for s in gateway_spans(spans)}
            if len(trace_ids) != 1:
                return False
            (trace_id,) = trace_ids
            served = {
                s.service for s in spans if s.trace_id == trace_id and s.kind == SPAN_KIND_SERVER
            }
            return served >= services

        spans = self.receiver.wait_for(complete, timeout=30)
        (trace_id,) = {s.trace_id for s in gateway_spans(spans)}
        return [s for s in spans if s.trace_id == trace_id]


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracedSystem]:
    admin, password = f"root-{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(16)
    base = tmp_path_factory.mktemp("e2e-tracing")
    with OtlpReceiver() as receiver:
        env = {
            # Cheap Argon2 for the one login (production keeps the default).
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_COST": "1024",
            "ARGON2_PARALLELISM": "1",
            "LOG_LEVEL": "INFO",  # the access lines
            "DENTIAPRO_ADMIN_USERNAME": admin,
            "DENTIAPRO_ADMIN_PASSWORD": password,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            # Batches every 100 ms (Traefik's Go SDK reads it too), not every 5 s.
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            # Every /health/ through the gateway fans out (no answer reused).
            "EDGE_HEALTH_CACHE_SECONDS": "0",
        }
        processes = launcher.System(
            ports=launcher.Ports.free(), data_dir=base / "data", env=env, log_dir=base / "logs"
        )
        with processes:
            response = httpx.post(
                f"{processes.gateway_url}/api/auth/login/",
                json={"username": admin, "password": password},
                timeout=15,
            )
            assert response.status_code == 200, response.text
            yield TracedSystem(processes, receiver, response.json()["access"])


def parent_of(span: ReceivedSpan, trace: list[ReceivedSpan]) -> ReceivedSpan:
    (parent,) = [s for s in trace if s.span_id == span.parent_span_id]
    return parent


def server_span(trace: list[ReceivedSpan], service: str) -> ReceivedSpan:
    spans = [s for s in trace if s.service == service and s.kind == SPAN_KIND_SERVER]
    assert len(spans) == 1, spans
    return spans[0]


def test_a_patient_list_is_one_trace_from_traefik_to_clinic_and_its_database(
    traced: TracedSystem,
) -> None:
    request_id = f"trace-patients-{uuid.uuid4().hex[:8]}"
    response = httpx.get(
        f"{traced.processes.gateway_url}/api/patients/?search=Jane",
        headers={"Authorization": f"Bearer {traced.token}", "X-Request-ID": request_id},
        timeout=15,
    )
    assert response.status_code == 200, response.text
    trace = traced.trace_of(request_id, {"clinic"})
    clinic = server_span(trace, "clinic")
    # Traefik's span is the parent: clinic continued the trace Traefik sent in traceparent.
    assert parent_of(clinic, trace).service == "traefik"
    # ... and the statements clinic ran are in it too.
    assert any(s.service == "clinic" and "db.statement" in s.attributes for s in trace)
    assert "Jane" not in json.dumps([s.attributes for s in trace], default=str)
    line = traced.access_line("clinic", request_id=request_id)
    assert (line["trace_id"], line["span_id"]) == (clinic.trace_id, clinic.span_id)


def test_the_gateway_health_is_one_trace_through_the_edge_to_every_service(
    traced: TracedSystem,
) -> None:
    request_id = f"trace-health-{uuid.uuid4().hex[:8]}"
    response = httpx.get(
        f"{traced.processes.gateway_url}/health/", headers={"X-Request-ID": request_id}, timeout=15
    )
    assert response.status_code == 200, response.text
    trace = traced.trace_of(request_id, {"edge", "auth", "clinic", "tenants"})
    edge = server_span(trace, "edge")
    assert parent_of(edge, trace).service == "traefik"
    for service in ("auth", "clinic", "tenants"):
        served = server_span(trace, service)
        call = parent_of(served, trace)  # the edge's httpx call carried traceparent
        assert (call.service, call.kind) == ("edge", SPAN_KIND_CLIENT)
    assert traced.access_line("edge", request_id=request_id)["trace_id"] == edge.trace_id


def test_a_registration_is_one_trace_through_auth_and_its_call_to_tenants(
    traced: TracedSystem,
) -> None:
    """Auth asks the tenants registry which tenant ``X-Tenant`` names (none here: a 400)."""
    request_id = f"trace-register-{uuid.uuid4().hex[:8]}"
    username = f"u{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        f"{traced.processes.gateway_url}/api/auth/register/",
        json={"username": username, "password": "Sturdy-Molar-Crown-42", "email": "u@example.com"},
        headers={"X-Request-ID": request_id, "X-Tenant": f"no_such_{username}"},
        timeout=15,
    )
    assert response.status_code == 400, response.text
    trace = traced.trace_of(request_id, {"auth", "tenants"})
    auth = server_span(trace, "auth")
    assert parent_of(auth, trace).service == "traefik"
    tenants = server_span(trace, "tenants")
    call = parent_of(tenants, trace)  # auth's httpx call carried traceparent
    assert (call.service, call.kind) == ("auth", SPAN_KIND_CLIENT)
    assert traced.access_line("auth", request_id=request_id)["trace_id"] == auth.trace_id
    # Auth does not pass its request id on: the trace id ties tenants' line to the request.
    line = traced.access_line("tenants", trace_id=tenants.trace_id)
    assert (line["route"], line["span_id"]) == ("/internal/tenants/resolve/", tenants.span_id)


def test_make_run_renders_traefik_tracing_only_with_an_endpoint(tmp_path: Path) -> None:
    ports = launcher.Ports.free()
    off = launcher.render_traefik_config(ports, tmp_path / "off.yml", env={})
    assert "tracing" not in yaml.safe_load(off.read_text())
    on = launcher.render_traefik_config(
        ports, tmp_path / "on.yml", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"}
    )
    tracing = yaml.safe_load(on.read_text())["tracing"]
    assert tracing["otlp"]["http"]["endpoint"] == "http://127.0.0.1:4318/v1/traces"
    assert tracing["serviceName"] == "traefik"
