from __future__ import annotations

from datetime import UTC, datetime

import pytest

from civicgrid_contracts import Envelope, MalformedEvent, topics
from civicgrid_contracts.calendar import DEFAULT_CALENDAR
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_contracts.values import Location, TimeLimits


def received(rid="r-1") -> RequestReceived:
    return RequestReceived.starting_clocks(DEFAULT_CALENDAR,
        request_id=rid, service_code="sanitation", service_name="Sanitation",
        time_limits=TimeLimits(response_hours=2, resolution_hours=24), location=Location(lat=39.9, lon=116.3),
        description="rubbish", channel="web", received_at=datetime(2026, 11, 28, 9, tzinfo=UTC),
    )


def test_binary_binding_round_trip():
    env = Envelope.wrap(received(), source="/civicgrid/intake")
    key, value, headers = env.to_kafka()
    assert key == b"r-1"
    names = {k for k, _ in headers}
    assert {"ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "ce_subject", "ce_correlationid",
            "ce_schemaversion", "content-type"} <= names
    back = Envelope.from_kafka(value, headers)
    assert back == env


def test_caused_events_have_deterministic_ids_and_keep_correlation():
    cause = Envelope.wrap(received(), source="/civicgrid/intake")
    a = cause.caused(received(), source="/x")
    b = cause.caused(received(), source="/x")
    assert a.id == b.id and a.causationid == cause.id and a.correlationid == cause.correlationid


@pytest.mark.parametrize("mutate,reason", [
    (lambda v, h: (v, [x for x in h if x[0] != "ce_type"]), "ce_type"),
    (lambda v, h: (b"{not json", h), "payload"),
    (lambda v, h: (v, [(k, b"civicgrid.nope" if k == "ce_type" else x) for k, x in h]), "unknown event type"),
    (lambda v, h: (v, [(k, b"other" if k == "ce_subject" else x) for k, x in h]), "subject"),
])
def test_malformed_messages_are_refused_with_a_reason(mutate, reason):
    env = Envelope.wrap(received(), source="/civicgrid/intake")
    _, value, headers = env.to_kafka()
    v, h = mutate(value, headers)
    with pytest.raises(MalformedEvent, match=reason):
        Envelope.from_kafka(v, h)


def test_every_event_type_has_exactly_one_topic_and_request_topics_are_co_partitioned():
    seen = {}
    for spec in topics.EVENT_TOPICS:
        for et in spec.event_types:
            assert et not in seen
            seen[et] = spec.name
    request_keyed = [s for s in topics.EVENT_TOPICS if s.key == "request id"]
    assert len({s.partitions for s in request_keyed}) == 1
    assert all(s.config["retention.ms"] == "-1" for s in topics.ALL_TOPICS)
