"""What every process reports: Prometheus metrics (requests, pools) and JSON log lines.

Metrics are labelled by route *template* (``/api/patients/{patient_id}/``), method and status
code, never by raw path, tenant or user, so series stay bounded. ``common.middleware`` counts
and logs each request with these. With tracing on (``common.tracing``), each log line written
while a span is active carries its ``trace_id`` and ``span_id``.
"""

import json
import logging
import sys
import time
import weakref
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from contextvars import ContextVar
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

# Buckets resolve sub-millisecond to multi-second requests.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("http_requests_in_flight", "HTTP requests being served.")
HTTP_WAITING = Gauge(
    "http_requests_waiting", "HTTP requests waiting for their turn (MAX_ACTIVE_REQUESTS)."
)

UNMATCHED_ROUTE = "<unmatched>"
MAX_REQUEST_ID_LENGTH = 128


class _PoolCollector(Collector):
    """Connection-pool figures summed over every engine a service tracks."""

    def __init__(self) -> None:
        self.engines: weakref.WeakSet[Engine | AsyncEngine] = weakref.WeakSet()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        size = GaugeMetricFamily("db_pool_size", "Connections the pools keep open.")
        checked_out = GaugeMetricFamily("db_pool_checked_out", "Connections in use.")
        overflow = GaugeMetricFamily("db_pool_overflow", "Connections beyond the pool size.")
        totals = [0, 0, 0]
        for engine in list(self.engines):
            pool: Any = engine.pool
            for index, name in enumerate(("size", "checkedout", "overflow")):
                reading = getattr(pool, name, None)
                if callable(reading):
                    totals[index] += max(0, int(reading()))
        size.add_metric([], totals[0])
        checked_out.add_metric([], totals[1])
        overflow.add_metric([], totals[2])
        return [size, checked_out, overflow]


_POOLS = _PoolCollector()
REGISTRY.register(_POOLS)


def track_engine(engine: Engine | AsyncEngine) -> None:
    """Report ``engine``'s pool in ``/metrics/``."""
    _POOLS.engines.add(engine)


def valid_request_id(value: str) -> bool:
    return 0 < len(value) <= MAX_REQUEST_ID_LENGTH and all(33 <= ord(c) <= 126 for c in value)


REQUEST_FIELDS = ("method", "route", "status", "duration_ms", "tenant", "user_id")
ACCESS_LOGGER = "dentiapro.access"

# The active span's (trace_id, span_id) in hex, or None outside a span; set by common.tracing
# when tracing is on. None (tracing off): log lines look for no span at all.
TraceIds = Callable[[], tuple[str, str] | None]
_trace_ids: TraceIds | None = None


def set_trace_ids(source: TraceIds | None) -> None:
    """Where log lines take their ``trace_id`` and ``span_id`` from (None: nowhere)."""
    global _trace_ids
    _trace_ids = source


def _add_trace_ids(entry: dict[str, Any], source: TraceIds) -> None:
    ids = source()
    if ids is not None:
        entry["trace_id"], entry["span_id"] = ids


def _timestamp(created: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int(created * 1000) % 1000:03d}Z"
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line; request fields come from ``extra``."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for key in REQUEST_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if _trace_ids is not None:
            _add_trace_ids(entry, _trace_ids)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


class AccessLog:
    """Writes each request's access line, the line ``JsonFormatter`` would write for the
    ``dentiapro.access`` logger, straight to that logger's handler stream.

    It runs on every request: the logging machinery's record, handler lookup and formatter
    took 7% of a read's CPU (measured, docs/performance.md); the line is the same. The logger's
    level still decides (``LOG_LEVEL`` above INFO: no access lines).
    """

    def __init__(self) -> None:
        self.logger = logging.getLogger(ACCESS_LOGGER)
        self.service = "-"
        self.handler: logging.StreamHandler[Any] | None = None

    def write(self, request_id: str, fields: dict[str, Any]) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        handler = self.handler
        if handler is None:  # logging not configured by create_app (a bare test app)
            self.logger.info("request", extra=fields)
            return
        entry: dict[str, Any] = {
            "ts": _timestamp(time.time()),
            "level": "info",
            "service": self.service,
            "logger": ACCESS_LOGGER,
            "msg": "request",
            "request_id": request_id,
        }
        for key in REQUEST_FIELDS:
            value = fields.get(key)
            if value is not None:
                entry[key] = value
        if _trace_ids is not None:
            _add_trace_ids(entry, _trace_ids)
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with handler.lock or nullcontext():
            handler.stream.write(line)
            handler.stream.flush()


access_log = AccessLog()


def configure_logging(service: str, level: str = "INFO") -> None:
    # The JSON lines hold no caller, thread or process fields: skip gathering them (the logging
    # HOWTO's "Optimization" section; the caller lookup walks the stack on every record).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    access_log.service = service
    access_log.handler = handler
    # Client libraries log full URLs (queries may hold a patient's name): keep them quiet.
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# Labelled children are looked up once per (method, route[, status]), not per request:
# ``labels()`` validates and hashes its arguments under a lock every time. Both key sets are
# bounded (route templates, methods, status codes), as the metrics' own series are.
_request_counters: dict[tuple[str, str, int], Any] = {}
_latency_histograms: dict[tuple[str, str], Any] = {}
# The method is the client's choice (the HTTP parser lets WebDAV's and others through, and the
# gateway passes them on): the rest count as one value, so no client can add series at will.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"


def count_request(method: str, route: str, status: int, elapsed: float) -> None:
    """Count one request and observe its latency (``method`` already one of KNOWN_METHODS or
    OTHER_METHOD, ``route`` a template)."""
    counter = _request_counters.get((method, route, status))
    if counter is None:
        counter = _request_counters[(method, route, status)] = HTTP_REQUESTS.labels(
            method, route, str(status)
        )
    histogram = _latency_histograms.get((method, route))
    if histogram is None:
        histogram = _latency_histograms[(method, route)] = HTTP_LATENCY.labels(method, route)
    counter.inc()
    histogram.observe(elapsed)
