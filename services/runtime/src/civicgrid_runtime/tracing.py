"""Tracing across the bus: W3C trace context in every event, OpenTelemetry spans, OTLP export.

Every event carries the trace context of the place it was created in its ``traceparent`` /
``tracestate`` (the CloudEvents distributed-tracing extension, ``ce_traceparent`` /
``ce_tracestate`` in Kafka). An event waiting in an outbox keeps that context in the stored event,
so the relay's publish, however much later, continues the trace of what caused it.

Spans: HTTP requests (FastAPI instrumentation), store commands (PyMongo's instrumentation, through
PyMongo's command monitoring, which covers the async client), one ``publish`` span per event (a
child of its creation context; its own context is what goes in the Kafka header) and one
``process`` span per consumed event (a child of that header). A handler that takes a batch of
several events runs in a ``process batch`` span linked to each event's ``process`` span; a batch of
one runs in the event's own span, so a request's store calls appear in its trace.

Trace context always flows (ids in events and logs cost microseconds); spans are *recorded* and
exported only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the standard variable, OTLP over HTTP) is set
for the platform. Without it the sampler drops every span at creation.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from civicgrid_contracts import Envelope
from civicgrid_runtime.logging import bound_contextvars

if TYPE_CHECKING:
    from fastapi import FastAPI

    from civicgrid_runtime.bus import Delivery

TRACER = trace.get_tracer("civicgrid_runtime")
_PROPAGATOR = TraceContextTextMapPropagator()
#: while a consumer's handler runs: event id -> the context of that event's ``process`` span, so an
#: event the handler causes is stamped with the span of *its* cause, even inside a batch
_PROCESSING: contextvars.ContextVar[dict[str, otel_context.Context] | None] = contextvars.ContextVar(
    "civicgrid_processing", default=None)
_configured = False


def configure_tracing(service_name: str, *, otlp_endpoint: str = "") -> bool:
    """Install the process's tracer provider (once); True when spans are exported."""
    global _configured
    if _configured:
        return bool(otlp_endpoint)
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    resource = Resource.create({SERVICE_NAME: f"civicgrid-{service_name}"})
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=resource)  # OTEL_TRACES_SAMPLER applies (default: parent-based, on)
        # the exporter reads the standard OTEL_EXPORTER_OTLP_* variables (endpoint, headers, timeout)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider = TracerProvider(resource=resource, sampler=ALWAYS_OFF)
    trace.set_tracer_provider(provider)
    PymongoInstrumentor().instrument(tracer_provider=provider)
    _configured = True
    return bool(otlp_endpoint)


def shutdown_tracing() -> None:
    """Export what is still buffered (at a clean stop)."""
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()


def instrument_app(app: FastAPI) -> None:
    """HTTP server spans for every route but health checks and metrics (polled every few seconds)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="health/,metrics", exclude_spans=["receive", "send"])


# --------------------------------------------------------------------------- trace context


def context_of(envelope: Envelope) -> otel_context.Context | None:
    """The trace context an event carries, or None."""
    if not envelope.traceparent:
        return None
    carrier = {"traceparent": envelope.traceparent}
    if envelope.tracestate:
        carrier["tracestate"] = envelope.tracestate
    return _PROPAGATOR.extract(carrier)


def _carrier(ctx: otel_context.Context | None = None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=ctx)
    return carrier


def stamped(envelope: Envelope) -> Envelope:
    """The event with the trace context of where it is created: the ``process`` span of its cause
    while a consumer handles it, else the current span (an HTTP request's). One it has is kept."""
    if envelope.traceparent:
        return envelope
    ctx = _cause_context(envelope)
    if ctx is None:
        span = trace.get_current_span()
        if span.is_recording():  # e.g. the HTTP request that submitted it: found by its request id
            span.set_attribute("civicgrid.request_id", envelope.subject)
    carrier = _carrier(ctx)
    if not carrier:
        return envelope
    return envelope.model_copy(update={"traceparent": carrier["traceparent"], "tracestate": carrier.get("tracestate")})


def _cause_context(envelope: Envelope) -> otel_context.Context | None:
    """The ``process`` span of the event's cause, while a consumer handles that cause."""
    processing = _PROCESSING.get()
    return processing.get(envelope.causationid) if processing and envelope.causationid else None


def current_ids() -> dict[str, str]:
    """``trace_id`` and ``span_id`` of the current span, for log lines (empty when there is none)."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


# --------------------------------------------------------------------------- producer side


_TRACE_HEADERS = ("ce_traceparent", "ce_tracestate")


def start_publish(topic: str, env: Envelope) -> tuple[trace.Span, tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """A ``publish`` span for one event, a child of its creation context, and the event's Kafka
    (key, value, headers), whose trace context is this span's (what the consumer's span continues).
    The caller ends the span once the broker acknowledged (``end_publish``)."""
    # its creation context: the one it carries, else (published where it was made) its cause's
    # span or the current one; the same as ``stamped`` would give, without copying the envelope
    parent = context_of(env) if env.traceparent else _cause_context(env)
    span = TRACER.start_span(f"publish {topic}", context=parent, kind=SpanKind.PRODUCER)
    if span.is_recording():
        span.set_attributes({
            "messaging.system": "kafka", "messaging.operation.type": "send", "messaging.destination.name": topic,
            "messaging.message.id": env.id, "cloudevents.event_type": env.type,
            "civicgrid.request_id": env.subject, "civicgrid.correlation_id": env.correlationid,
        })
    key, value, headers = env.to_kafka()
    sc = span.get_span_context()
    if sc.is_valid:  # the W3C header from the span's ids, without a propagator round per event
        headers = [h for h in headers if h[0] not in _TRACE_HEADERS]
        headers.append(("ce_traceparent", f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}".encode()))
        if sc.trace_state:
            headers.append(("ce_tracestate", sc.trace_state.to_header().encode()))
    return span, (key, value, headers)


def end_publish(spans: Sequence[trace.Span], exc: BaseException | None = None) -> None:
    for span in spans:
        if exc is not None:
            _failed(span, exc)
        span.end()


# --------------------------------------------------------------------------- consumer side


@contextlib.contextmanager
def handling(group_id: str, topic: str, deliveries: Sequence[Delivery]) -> Iterator[trace.Span]:
    """Spans and log fields for handling ``deliveries`` (of ``topic``, or of several topics when a
    consumer merges them: each event's span names its own topic): a ``process`` span per event,
    a child of the context in its header; the handler runs in that span (one event) or in a
    ``process batch`` span linked to them all. Log lines carry the event id, correlation and request
    id (one event) or the batch's size and its first and last event id."""
    spans = []
    contexts: dict[str, otel_context.Context] = {}
    for d in deliveries:
        env = d.envelope
        span = TRACER.start_span(f"process {d.topic}", context=context_of(env), kind=SpanKind.CONSUMER)
        if span.is_recording():
            span.set_attributes({
                "messaging.system": "kafka", "messaging.operation.type": "process",
                "messaging.destination.name": d.topic, "messaging.consumer.group.name": group_id,
                "messaging.destination.partition.id": str(d.partition), "messaging.kafka.offset": d.offset,
                "messaging.message.id": env.id, "cloudevents.event_type": env.type,
                "civicgrid.request_id": env.subject, "civicgrid.correlation_id": env.correlationid,
            })
        spans.append(span)
        contexts[env.id] = trace.set_span_in_context(span)
    if len(deliveries) == 1:
        env = deliveries[0].envelope
        current, fields = spans[0], {"event_id": env.id, "correlation_id": env.correlationid,
                                     "request_id": env.subject}
    else:
        current = TRACER.start_span(
            f"process {topic} batch", kind=SpanKind.CONSUMER,
            links=[Link(s.get_span_context()) for s in spans if s.is_recording()])
        if current.is_recording():
            current.set_attributes({"messaging.system": "kafka", "messaging.destination.name": topic,
                                    "messaging.consumer.group.name": group_id,
                                    "messaging.batch.message_count": len(deliveries)})
        fields = {"batch": len(deliveries), "first_event_id": deliveries[0].envelope.id,
                  "last_event_id": deliveries[-1].envelope.id}
    token = _PROCESSING.set(contexts)
    try:
        with (trace.use_span(current, end_on_exit=False, record_exception=False, set_status_on_exception=False),
              bound_contextvars(**fields)):
            yield current
    except BaseException as exc:
        for span in {id(s): s for s in [*spans, current]}.values():
            _failed(span, exc)
        raise
    finally:
        _PROCESSING.reset(token)
        if current not in spans:
            current.end()
        for span in spans:
            span.end()


def _failed(span: trace.Span, exc: BaseException) -> None:
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def log_trace_ids(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the current span's trace and span id on every line."""
    for k, v in current_ids().items():
        event_dict.setdefault(k, v)
    return event_dict
