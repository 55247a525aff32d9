"""Metrics (Prometheus) and tracing (OpenTelemetry) shared by every service.

Metrics carry a `service` label so several runtimes can share one process in tests. Trace
context travels in the event envelope (`traceparent`), so one trace follows a request from
intake's HTTP call through every service that reacts to it.
"""

from __future__ import annotations


import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

RECEIVED = Counter("refuge_messages_received", "stream entries read", ["service", "stream"], registry=REGISTRY)
PROCESSED = Counter("refuge_messages_processed", "events whose effects committed", ["service", "event_type"], registry=REGISTRY)
DUPLICATES = Counter("refuge_messages_duplicate", "redelivered events the inbox dropped", ["service"], registry=REGISTRY)
FAILED = Counter("refuge_messages_failed", "handler failures (entry left pending)", ["service", "event_type"], registry=REGISTRY)
REDELIVERED = Counter("refuge_messages_redelivered", "entries taken over after idling", ["service", "stream"], registry=REGISTRY)
DEAD_LETTERED = Counter("refuge_messages_dead_lettered", "entries sent to the dead-letter stream", ["service", "stream"], registry=REGISTRY)
HANDLER_SECONDS = Histogram("refuge_handler_seconds", "time to apply and commit one batch", ["service"], registry=REGISTRY,
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
PUBLISHED = Counter("refuge_outbox_published", "events published from the outbox", ["service"], registry=REGISTRY)
OUTBOX_BACKLOG = Gauge("refuge_outbox_backlog", "committed events not yet published", ["service"], registry=REGISTRY)
GROUP_LAG = Gauge("refuge_consumer_group_lag", "entries not yet delivered to the group", ["service", "stream"], registry=REGISTRY)
GROUP_PENDING = Gauge("refuge_consumer_group_pending", "entries delivered but not acknowledged", ["service", "stream"], registry=REGISTRY)
DOMAIN = Gauge("refuge_domain", "domain gauges (occupancy, waiting list, open referrals...)", ["service", "name", "kind"], registry=REGISTRY)
HTTP_REQUESTS = Counter("refuge_http_requests", "HTTP requests", ["service", "method", "status"], registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)


_propagator = TraceContextTextMapPropagator()
_configured = False
_exporting = False  # spans go somewhere; otherwise only their context is carried on


def configure_tracing(service: str, otlp_endpoint: str | None = None, timeout_seconds: float = 5.0) -> None:
    """One tracer provider per process; spans go to an OTLP/HTTP collector when one is configured."""
    global _configured, _exporting
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces", timeout=timeout_seconds)
        # Exported from a worker thread in batches: a slow or absent collector never holds up an event.
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
        _exporting = True
    trace.set_tracer_provider(provider)
    _configured = True


def flush_traces(timeout_seconds: float = 2.0) -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(int(timeout_seconds * 1000))


# A proxy until configure_tracing sets the provider, then the provider's own: looked up once,
# not on every span (the lookup cost about a tenth of handling an event).
_TRACER = trace.get_tracer("refuge")


def tracer():
    return _TRACER


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, as the propagator's inject writes it (formatted here:
    the propagator's way cost as much as the rest of wrapping an event)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def trace_id_of(traceparent: str | None) -> str | None:
    if not traceparent:
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 else None


# TracedRequests below spans each request; FastAPI's own telemetry would open a second span for it.
FASTAPI_TELEMETRY = {"tracing": False, "metrics": False, "logs": False}


class TracedRequests:
    """Pure ASGI middleware (no task, no buffering): each HTTP request is a span, child of the
    caller's `traceparent`, answered with its own `traceparent`, and counted by status."""

    def __init__(self, app, *, service: str):
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parent = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"traceparent"), None)
        status = 500

        async def send_traced(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if own := current_traceparent():
                    headers = [h for h in message.get("headers", []) if h[0].lower() != b"traceparent"]
                    message = {**message, "headers": [*headers, (b"traceparent", own.encode())]}
            await send(message)

        try:
            with span(f"{scope['method']} {scope['path']}", parent):
                await self.app(scope, receive, send_traced)
        finally:
            HTTP_REQUESTS.labels(self.service, scope["method"], str(status)).inc()


def _unrecorded_child(context) -> trace.NonRecordingSpan:
    """With no collector, a span is never recorded, and the SDK building one cost about a tenth of
    handling an event: only the identity is made, a new span id in the parent's trace (or a new
    trace), so trace ids still follow a request through logs and events."""
    parent = trace.get_current_span(context).get_span_context() if context is not None else None
    if parent is not None and parent.is_valid:
        trace_id, flags = parent.trace_id, parent.trace_flags
    else:
        trace_id, flags = _ids.generate_trace_id(), trace.TraceFlags(trace.TraceFlags.SAMPLED)
    return trace.NonRecordingSpan(trace.SpanContext(trace_id, _ids.generate_span_id(), is_remote=False, trace_flags=flags))


_ids = RandomIdGenerator()


class span:  # noqa: N801 - used as `with span(...)`, like the function it replaced
    """A span, child of `traceparent` when given; binds trace_id to every log line inside it. A
    class rather than a generator and start_as_current_span: it wraps every event handled, and
    this way costs half as much. A failure is recorded by its type only (no message, no values)."""

    __slots__ = ("name", "traceparent", "attributes", "current", "_attached", "_bound")

    def __init__(self, name: str, traceparent: str | None = None, **attributes):
        self.name, self.traceparent, self.attributes = name, traceparent, attributes

    def __enter__(self):
        context = _propagator.extract({"traceparent": self.traceparent}) if self.traceparent else None
        if _exporting:
            self.current = _TRACER.start_span(self.name, context=context, attributes=self.attributes)
        else:
            self.current = _unrecorded_child(context)
        self._attached = otel_context.attach(trace.set_span_in_context(self.current))
        span_context = self.current.get_span_context()
        trace_id = format(span_context.trace_id, "032x") if span_context.is_valid else None
        self._bound = structlog.contextvars.bind_contextvars(trace_id=trace_id)
        return self.current

    def __exit__(self, exc_type, exc, _traceback) -> bool:
        structlog.contextvars.reset_contextvars(**self._bound)
        otel_context.detach(self._attached)
        if exc_type is not None:
            self.current.set_status(Status(StatusCode.ERROR, exc_type.__name__))
            self.current.add_event("exception", {"exception.type": exc_type.__name__})
        self.current.end()
        return False
