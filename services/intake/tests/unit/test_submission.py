"""The submission aggregate's rules and the stored shapes' upcasters, as plain objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.grid import RequestResolved
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_contracts.values import Location, TimeLimits
from civicgrid_intake.adapters import documents
from civicgrid_intake.domain.errors import Conflict
from civicgrid_intake.domain.submission import DuplicateCandidate, Submission
from civicgrid_runtime.calendar import DEFAULT_CALENDAR

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def received(rid: str = "r", parent: str | None = None) -> RequestReceived:
    return RequestReceived.starting_clocks(
        DEFAULT_CALENDAR, request_id=rid, service_code="sanitation", service_name="Sanitation", service_group="city",
        handled_by=("grid",), departments=(), needs_volunteer=False,
        time_limits=TimeLimits(response_hours=2, resolution_hours=48), location=Location(lat=39.9, lon=116.4),
        description="bins", attributes={}, channel="app", received_at=T0, duplicate_of=parent)


def new(parent: DuplicateCandidate | None = None) -> Submission:
    return Submission.receive(received(parent=parent.request_id if parent else None), source="/t", details={},
                              parent=parent, answer={"request_id": "r"}, idem_hash=None, contact_enc="enc")


def resolve(sub: Submission) -> None:
    sub.apply(Envelope.wrap(RequestResolved(request_id=sub.request_id, staff_id="s", resolution_note="ok",
                                            resolved_at=T0), source="/grid", time=T0))


def test_a_new_submission_records_its_received_event_with_a_stable_id():
    a, b = new(), new()
    assert [e.type for e in a.pending_events] == ["civicgrid.request.received"]
    assert a.pending_events[0].id == b.pending_events[0].id  # derived from the request id
    assert a.state.expected_at == a.pending_events[0].data.resolution_due and a.version == 1


def test_a_duplicate_records_its_merge_and_counts_the_followers():
    sub = new(DuplicateCandidate("p", 12.34, followers=2))
    merged = sub.pending_events[1].data
    assert sub.status == "merged" and sub.duplicate_of == "p" and not sub.can_be_followed
    assert (merged.into_request_id, merged.distance_m, merged.followers) == ("p", 12.3, 3)
    assert sub.answer["status"] == "merged"


def test_followers_are_added_and_dropped_once():
    sub = new()
    assert sub.add_follower("f", at=T0) and not sub.add_follower("f", at=T0) and sub.followers == 2
    assert sub.drop_follower("f", at=T0) and not sub.drop_follower("f", at=T0) and sub.followers == 1


def test_only_a_merged_request_is_unmerged():
    sub = new(DuplicateCandidate("p", 5, 1))
    sub.take_events()
    assert sub.unmerge(staff_id="s", reason="no", source="/t", at=T0) == "p"
    assert sub.status == "received" and [e.data.from_request_id for e in sub.pending_events] == ["p"]
    with pytest.raises(Conflict):
        sub.unmerge(staff_id="s", reason="no", source="/t", at=T0)


def test_only_a_resolved_request_is_rated():
    sub = new()
    with pytest.raises(Conflict):
        sub.rate("satisfied", None, source="/t", at=T0)
    resolve(sub)
    sub.take_events()
    sub.rate("unsatisfied", "dark", source="/t", at=T0 + timedelta(hours=1))
    assert sub.status == "reopened" and sub.reopen_count == 1 and sub.is_open
    assert [e.type.rsplit(".", 1)[1] for e in sub.pending_events] == ["rated", "reopened"]
    assert sub.pending_events[1].data.reopen_count == 1


def test_a_lifecycle_event_folds_in_once():
    sub = new()
    env = Envelope.wrap(RequestResolved(request_id="r", staff_id="s", resolution_note="ok", resolved_at=T0),
                        source="/grid", time=T0)
    assert sub.apply(env) and not sub.apply(env)
    assert sub.status == "resolved" and len(sub.history) == 2 and not sub.pending_events[1:]


def test_erasure_keeps_the_history():
    sub = new()
    sub.erase_contact(at=T0)
    assert sub.contact_enc is None and sub.contact_erased_at == T0 and sub.history[-1]["type"] == "intake.contact_erased"


def test_a_submission_survives_its_document():
    sub = new(DuplicateCandidate("p", 5, 1))
    sub.add_follower("x", at=T0)
    back = documents.from_document(documents.to_document(sub))
    assert back.state == sub.state and back.history == sub.history and back.followers_ids == ["x"]
    assert documents.to_document(sub)["schema_version"] == documents.CURRENT[documents.REQUESTS]


@pytest.mark.parametrize("collection", sorted(documents.CURRENT))
def test_every_collections_oldest_shape_upcasts_to_the_current(collection):
    old = {"_id": "x", "received_at": T0, "status": "received"} if collection == documents.REQUESTS else {"_id": "x"}
    up = documents.upcast(collection, dict(old))
    assert up["schema_version"] == documents.CURRENT[collection]
    assert documents.upcast(collection, up) is up  # the current shape is read as it is


def test_a_requests_version_0_loses_the_old_relays_token_and_gains_its_lists():
    up = documents.upcast(documents.REQUESTS, {"_id": "x", "_ob": "t", "received_at": T0, "status": "assigned"})
    assert "_ob" not in up and up["followers_ids"] == [] and up["response_due"] is None and up["version"] == 1


def test_a_requests_version_1_was_never_imported():
    up = documents.upcast(documents.REQUESTS, {"_id": "x", "schema_version": 1, "received_at": T0,
                                               "status": "received"})
    assert up["imported_from"] is None and up["schema_version"] == 2


def test_a_shape_newer_than_the_code_is_refused():
    with pytest.raises(ValueError, match="newer"):
        documents.upcast(documents.REQUESTS, {"_id": "x", "schema_version": 99})
