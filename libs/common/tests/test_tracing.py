"""Tracing (common.tracing): on only with OTEL_EXPORTER_OTLP_ENDPOINT, and then every hop joins
the caller's trace. Tracing is set up per process, so each case runs the service as its own
process (tests/traced_app.py) and reads what it exports with a real OTLP receiver."""

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from common import tracing
from common.testing import OtlpReceiver, ReceivedSpan, free_port

HERE = Path(__file__).resolve().parent
SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
OTEL_PACKAGES = ("opentelemetry.sdk", "opentelemetry.instrumentation", "opentelemetry.exporter")


class Service:
    """traced_app under uvicorn in its own process; its stdout (JSON log lines) kept."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "service.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        self.env = {
            **clean,
            "DENTIAPRO_DATA_DIR": str(tmp_path),
            "SELF_URL": self.url,
            "LOG_LEVEL": "INFO",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "Service":
        command = [sys.executable, "-m", "uvicorn", "traced_app:create_app", "--factory"]
        command += ["--app-dir", str(HERE), "--port", str(self.port), "--no-access-log"]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60  # a loaded machine (CI) starts Python slowly
        try:
            while True:
                assert self.process.poll() is None, self.log.read_text()
                try:
                    if httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.1)
        except BaseException:
            self.__exit__()  # never leave a server behind
            raise

    def __exit__(self, *_: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=15)

    def access_lines(self, request_id: str) -> list[dict[str, Any]]:
        """The access lines of ``request_id`` (waits a little: each follows its response)."""
        deadline = time.monotonic() + 5
        while True:
            text = self.log.read_text().splitlines()
            lines = [
                entry
                for entry in (json.loads(line) for line in text if line[:1] == "{")
                if entry["logger"] == "dentiapro.access" and entry["request_id"] == request_id
            ]
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def traced_env(receiver: OtlpReceiver) -> dict[str, str]:
    # Batches sent every 50 ms instead of 5 s: the test waits for them.
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}


def test_a_request_continues_the_callers_trace_across_every_hop(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    with Service(tmp_path, traced_env(receiver)) as service:
        response = httpx.get(
            f"{service.url}/api/hop/?search=Jane+Doe",
            headers={"traceparent": f"00-{trace_id}-{parent_id}-01", "X-Request-ID": "hop-1"},
        )
        assert response.status_code == 200, response.text

        def complete(spans: list[ReceivedSpan]) -> bool:
            mine = [s for s in spans if s.trace_id == trace_id]
            return sum(s.kind == SPAN_KIND_SERVER for s in mine) == 2 and any(
                s.attributes.get("db.statement") == "SELECT 1" for s in mine
            )

        receiver.wait_for(complete)
        spans = receiver.trace(trace_id)
        access = service.access_lines("hop-1")
    assert {span.service for span in spans} == {"traced"}
    (outer,) = [s for s in spans if s.kind == SPAN_KIND_SERVER and s.parent_span_id == parent_id]
    (client,) = [s for s in spans if s.kind == SPAN_KIND_CLIENT and "http.method" in s.attributes]
    (inner,) = [s for s in spans if s.kind == SPAN_KIND_SERVER and s is not outer]
    (statement,) = [s for s in spans if s.attributes.get("db.statement") == "SELECT 1"]
    # httpx carried traceparent: the next hop's server span is the client span's child.
    assert client.parent_span_id == outer.span_id
    assert inner.parent_span_id == client.span_id
    assert statement.parent_span_id in {s.span_id for s in spans}
    # The query string (a patient's name, say) reaches no span.
    assert "Jane" not in json.dumps([span.attributes for span in spans], default=str)
    # The access line of the request carries its trace and its server span.
    (line,) = access
    assert (line["trace_id"], line["span_id"]) == (trace_id, outer.span_id)


def test_a_request_without_traceparent_starts_a_trace_its_log_line_names(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    """... and Prometheus's scrapes start none (EXCLUDED_URLS)."""
    with Service(tmp_path, traced_env(receiver)) as service:
        assert httpx.get(f"{service.url}/metrics/").status_code == 200
        assert httpx.get(f"{service.url}/api/rows/", headers={"X-Request-ID": "r-1"}).is_success
        (line,) = service.access_lines("r-1")
        spans = receiver.wait_for(lambda spans: any(s.kind == SPAN_KIND_SERVER for s in spans))
    (server,) = [s for s in spans if s.kind == SPAN_KIND_SERVER]
    assert server.name == "GET /api/rows/"
    assert server.parent_span_id == ""
    assert (line["trace_id"], line["span_id"]) == (server.trace_id, server.span_id)


def test_without_an_endpoint_nothing_of_opentelemetry_is_loaded_or_logged(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    """Tracing off: no SDK, exporter or instrumentation imported, nothing exported, and the
    access line has no trace_id, even for a request that carries a traceparent."""
    with Service(tmp_path, {}) as service:
        response = httpx.get(
            f"{service.url}/api/hop/",
            headers={"traceparent": f"00-{'1' * 32}-{'2' * 16}-01", "X-Request-ID": "off-1"},
        )
        assert response.status_code == 200
        (line,) = service.access_lines("off-1")
    assert "trace_id" not in line
    assert "span_id" not in line
    # The same, in one process that builds the app, serves a request and lists its modules.
    probe = (
        "import sys, httpx, traced_app;"
        "from common.testing import serve;"
        "app = traced_app.create_app();"
        "server = serve(app, int(sys.argv[1])); server.__enter__();"
        "assert httpx.get(sys.argv[2] + '/api/rows/').status_code == 200;"
        f"print('loaded:', [m for m in sys.modules if m.startswith({OTEL_PACKAGES!r})])"
    )
    port = free_port()
    probed = subprocess.run(
        [sys.executable, "-c", probe, str(port), f"http://127.0.0.1:{port}"],
        env={**service.env, "SELF_URL": f"http://127.0.0.1:{port}", "PYTHONPATH": str(HERE)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "loaded: []" in probed.stdout, probed.stdout + probed.stderr
    assert receiver.requests == 0


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"},
            False,
        ),
    ],
)
def test_tracing_is_on_only_with_an_endpoint(env: dict[str, str], on: bool) -> None:
    assert tracing.enabled(env) is on


def test_an_unsupported_protocol_stops_the_service_with_a_clear_message(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    env = {**traced_env(receiver), "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    with pytest.raises(AssertionError), Service(tmp_path, env):
        pass  # it never serves
    log = (tmp_path / "service.log").read_text()
    assert "TracingConfigError: OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported" in log
