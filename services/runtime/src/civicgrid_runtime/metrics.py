"""Prometheus metrics every service exposes at ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter("civicgrid_events_consumed_total", "Events handled successfully", ["group", "topic", "type"])
EVENTS_PUBLISHED = Counter("civicgrid_events_published_total", "Events published", ["topic"])
HANDLER_FAILURES = Counter("civicgrid_handler_failures_total", "Handler attempts that raised", ["group", "topic", "kind"])
DEAD_LETTERED = Counter("civicgrid_dead_lettered_total", "Messages sent to a dead-letter topic", ["group", "topic"])
HANDLER_SECONDS = Histogram(
    "civicgrid_handler_seconds", "Time to handle one batch of one partition", ["group", "topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge("civicgrid_consumer_lag", "Messages behind the high watermark", ["group", "topic", "partition"])
OUTBOX_PENDING = Gauge("civicgrid_outbox_pending_documents", "Documents with events not yet published", ["collection"])
DEPENDENCY_UP = Gauge("civicgrid_dependency_up", "1 if the dependency answered the last readiness check, else 0",
                      ["dependency"])
ESCALATION_BACKLOG_SECONDS = Gauge(
    "civicgrid_escalation_backlog_seconds",
    "How long the oldest due clock this replica schedules has waited for its escalation (0: none is due)")
ESCALATION_DELAY = Histogram(
    "civicgrid_escalation_delay_seconds", "From a clock's due time to the write of its escalation",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
