"""OpenTelemetry tracing, on only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (DESIGN.md s.6).

Off (the default) this module imports nothing of OpenTelemetry's SDK, exporter or
instrumentations, adds no middleware and wraps nothing: a request costs what it cost before
tracing existed, and log lines carry no ``trace_id``.

On, ``configure`` sets the process up once (``create_app`` calls it while building the app):

- the SDK from the standard ``OTEL_*`` variables: a tracer provider whose resource is
  ``service.name`` (``OTEL_SERVICE_NAME``, else the process's own name: auth, clinic, ...) plus
  ``OTEL_RESOURCE_ATTRIBUTES``; the sampler from ``OTEL_TRACES_SAMPLER`` (parent-based: a
  request Traefik sampled is sampled here too); a batch processor (``OTEL_BSP_*``) exporting
  OTLP over HTTP/protobuf to ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces`` (or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``_HEADERS``, ``_TIMEOUT``, ``_COMPRESSION`` too).
  HTTP/protobuf because the gRPC exporter ships a gRPC stack for nothing more: Jaeger, the
  OpenTelemetry Collector and Traefik all speak both;
- the httpx instrumentation, so every call a service makes (auth to tenants, the edge's
  ``/health/`` fan-out, JWKS fetches) carries ``traceparent`` and has its client span;
- the SQLAlchemy instrumentation: every engine ``common.db`` creates from then on has a span per
  statement (the SQL with its placeholders, never the values: engines hide parameters);
- ``trace_id`` and ``span_id`` in every JSON log line written while a span is active.

``instrument_app`` then puts FastAPI's instrumentation outermost around the app: its server span
continues the caller's ``traceparent`` (Traefik's) and is current while ``ServiceMiddleware``
writes the access line. Query strings stay out of spans, as they stay out of the logs: they may
hold a patient's name (``?search=``).
"""

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from common import observability

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider

ENDPOINT: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
PROTOCOL: Final = "http/protobuf"
# Scraped every few seconds, and a trace of nothing: Prometheus, and Traefik's liveness check
# of the edge. (OTEL_PYTHON_FASTAPI_EXCLUDED_URLS replaces the list.)
EXCLUDED_URLS: Final = "/metrics,/health/live"
EXCLUDED_URLS_VARIABLE: Final = "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS"
# Span attributes that hold the request's query string, by semantic-conventions version.
_URL_ATTRIBUTES: Final = ("http.url", "url.full")
_TARGET_ATTRIBUTES: Final = ("http.target",)
_QUERY_ATTRIBUTES: Final = ("url.query",)
REDACTED: Final = "REDACTED"

_provider: "TracerProvider | None" = None


class TracingConfigError(ValueError):
    """``OTEL_*`` settings this build cannot honour (the process refuses to start)."""


def enabled(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this process traces: an OTLP endpoint is set and the SDK is not disabled."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(env.get(ENDPOINT, "").strip())


def _check_protocol(env: Mapping[str, str]) -> None:
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = env.get(variable, "").strip()
        if protocol:
            if protocol != PROTOCOL:
                raise TracingConfigError(
                    f"{variable}={protocol} is not supported: DentiaPro exports traces over "
                    f"OTLP {PROTOCOL} (Jaeger and the OpenTelemetry Collector take it on port "
                    "4318); unset it or set it to http/protobuf"
                )
            return


def configure(service: str, version: str) -> bool:
    """Set tracing up for this process if its environment asks for it; whether it is on.

    Once per process: a second call (another app built in the same process, as tests do) finds
    it done. Raises ``TracingConfigError`` for settings it cannot honour.
    """
    global _provider
    env = os.environ
    if not enabled(env):
        return False
    if _provider is not None:
        return True
    _check_protocol(env)

    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = env.get("OTEL_SERVICE_NAME", "").strip() or service
    provider = TracerProvider(
        resource=Resource.create({"service.name": name, "service.version": version})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    # The instrumentation declares SQLAlchemy < 2.1 and would do nothing on our 2.1: it only
    # listens to engine events (before/after_cursor_execute, ...) that 2.1 keeps, and the tests
    # check that the statements' spans are there.
    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    observability.set_trace_ids(_current_trace_ids)
    _provider = provider
    return True


def instrument_app(app: "FastAPI") -> None:
    """FastAPI's instrumentation around ``app`` (outermost), once ``configure`` has run."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        excluded_urls=os.environ.get(EXCLUDED_URLS_VARIABLE, EXCLUDED_URLS),
        server_request_hook=_hide_query,
        # One span per request, not three: the ASGI receive/send events tell nothing here.
        exclude_spans=["receive", "send"],
    )


def flush(timeout_ms: int = 5_000) -> None:
    """Export the spans still batched (a stopping app's last requests)."""
    if _provider is not None:
        _provider.force_flush(timeout_ms)


def _current_trace_ids() -> tuple[str, str] | None:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


def _hide_query(span: Any, scope: dict[str, Any]) -> None:
    """Drop the query string from the server span's attributes, as Traefik redacts it."""
    if not scope.get("query_string") or not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        if isinstance(value := attributes.get(key), str):
            span.set_attribute(key, value.split("?", 1)[0])
    for key in _TARGET_ATTRIBUTES:
        if key in attributes:
            span.set_attribute(key, scope.get("path", ""))
    for key in _QUERY_ATTRIBUTES:
        if key in attributes:
            span.set_attribute(key, REDACTED)
