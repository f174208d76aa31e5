"""Trace context across the bus, in process (no broker, no backend): what an event carries, which
span continues which, what a log line says. The end-to-end trace through four services and Jaeger
is tests/e2e/test_trace.py."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.intake import RequestClosed
from civicgrid_runtime import tracing
from civicgrid_runtime.bus import Delivery
from civicgrid_runtime.logging import configure_logging, get_logger
from civicgrid_runtime.store import outbox_entries, pending_events

EXPORTER = InMemorySpanExporter()


@pytest.fixture(autouse=True)
def spans():
    # one provider per process (OpenTelemetry allows one); the services' processes configure their own
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def received(request_id: str = "r-1", **kw) -> Envelope:
    payload = RequestClosed(request_id=request_id, reason="satisfied", closed_at=datetime(2026, 1, 1, tzinfo=UTC))
    return Envelope.wrap(payload, source="/civicgrid/test", event_id=f"e-{request_id}", correlation_id="c-1",
                         causation_id=kw.pop("causationid", None)).model_copy(update=kw)


def ids(traceparent: str | bytes) -> tuple[str, str]:
    """(trace id, parent span id) of a traceparent (its flags vary: sampled, random)."""
    parts = (traceparent.decode() if isinstance(traceparent, bytes) else traceparent).split("-")
    return parts[1], parts[2]


def hex_ids(span) -> tuple[str, str]:
    c = span.get_span_context()
    return format(c.trace_id, "032x"), format(c.span_id, "016x")


def test_the_trace_context_travels_in_ce_headers_and_in_stored_events_but_not_in_the_content():
    env = received(traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate="k=v")
    headers = dict(env.to_kafka()[2])
    assert headers["ce_traceparent"] == b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert headers["ce_tracestate"] == b"k=v"
    assert "traceparent" not in env.to_document()  # an audit trail's hash ignores the carrier
    stored = env.to_document(with_trace=True)
    assert stored["traceparent"] == env.traceparent and stored["tracestate"] == "k=v"
    assert Envelope.from_document(stored).traceparent == env.traceparent
    assert "ce_traceparent" not in dict(received().to_kafka()[2])  # none: no header at all


def test_an_event_enqueued_in_an_http_span_is_stamped_with_it_and_its_publish_continues_that_trace(spans):
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("POST /api/v1/requests") as http:
        entries = outbox_entries([received()])  # what an outbox keeps, in the request's context
    # later, in the relay's own context (no span current): the stored event still names its cause
    [(_, pending)] = pending_events({"_outbox": entries})
    trace_id, http_span_id = hex_ids(http)
    assert ids(pending.traceparent) == (trace_id, http_span_id)
    span, (key, _, headers) = tracing.start_publish("intake.requests.v1", pending)
    tracing.end_publish([span])
    publish = next(s for s in spans.get_finished_spans() if s.name == "publish intake.requests.v1")
    assert publish.kind == SpanKind.PRODUCER and publish.parent.span_id == http.get_span_context().span_id
    assert ids(dict(headers)["ce_traceparent"]) == (trace_id, hex_ids(publish)[1])
    assert key == b"r-1"


def test_consuming_continues_the_header_and_what_the_handler_causes_names_its_own_cause(spans):
    upstream = trace.get_tracer("test").start_span("publish upstream")
    up_trace, up_span = hex_ids(upstream)
    other = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    batch = [Delivery(received("r-1", traceparent=f"00-{up_trace}-{up_span}-01"), "t.v1", 0, 5),
             Delivery(received("r-2", traceparent=other), "t.v1", 1, 9)]
    with tracing.handling("grid", "t.v1", batch):
        caused = [tracing.stamped(received(f"x-{d.envelope.subject}", causationid=d.envelope.id))
                  for d in batch]
    finished = {s.name: s for s in spans.get_finished_spans() if s.name.startswith("process")}
    process = [s for s in spans.get_finished_spans() if s.name == "process t.v1"]
    assert {format(s.context.trace_id, "032x") for s in process} == {up_trace, "1" * 32}
    first = next(s for s in process if s.attributes["messaging.message.id"] == "e-r-1")
    assert first.parent.span_id == upstream.get_span_context().span_id and first.kind == SpanKind.CONSUMER
    assert ids(caused[0].traceparent) == (up_trace, format(first.context.span_id, "016x"))
    assert ids(caused[1].traceparent)[0] == "1" * 32
    assert len(finished["process t.v1 batch"].links) == 2  # the batch span links every event's


def test_every_log_line_carries_trace_span_event_and_correlation_ids(monkeypatch):
    out = io.StringIO()
    configure_logging(service="test")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(out), cache_logger_on_first_use=False)
    try:
        env = received(traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        with tracing.handling("grid", "t.v1", [Delivery(env, "t.v1", 0, 1)]) as span:
            get_logger("test").info("handled")
        line = json.loads(out.getvalue().splitlines()[-1])
        assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
        assert line["span_id"] == hex_ids(span)[1]
        assert (line["event_id"], line["correlation_id"], line["request_id"]) == ("e-r-1", "c-1", "r-1")
        with trace.get_tracer("test").start_as_current_span("GET /x") as http:
            get_logger("test").info("answered")  # an HTTP path: the request's span
        assert json.loads(out.getvalue().splitlines()[-1])["trace_id"] == hex_ids(http)[0]
    finally:
        structlog.reset_defaults()
