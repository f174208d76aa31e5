"""The request document's stored shapes: every older one is read through the one upcaster path
(``domain.documents.upcast_request``) and comes out as the current shape."""

from __future__ import annotations

from civicgrid_contracts.calendar import DEFAULT_CALENDAR, due_at
from civicgrid_grid.adapters.documents import (
    SCHEMA_VERSION,
    case_from_document,
    case_to_document,
    upcast_request,
)
from civicgrid_runtime.store import pack_json

from .fakes import city, received

ASSIGNMENT = {"status": "assigned", "area": {"grid": "110101001001001"}, "assignee_id": "A1", "holder": "A",
              "level": "grid", "reason": "A: on duty", "load_holder": "A1", "map_version": 1, "prio": 1,
              "_applied": ["cause-1"]}


def v1_document(received_value) -> dict:
    return {"_id": "r1", "received": received_value, "correlation_id": "c1", **ASSIGNMENT}


def test_packed_received_is_read_as_named_fields():
    env = received(city().grids.codes[0], rid="r1")
    case = case_from_document(v1_document(pack_json(env.data.model_dump(mode="json"))))
    assert (case.service_code, case.due_response, case.due_resolution) == (
        "repair", env.data.response_due, env.data.resolution_due)
    assert case.location["lat"] == env.data.location.lat and case.time_limits["calendar"] == "business"
    assert (case.version, case.applied, case.assignee_id) == (0, ["cause-1"], "A1")


def test_plain_received_of_event_version_1_gets_its_deadlines_from_the_events_upcaster():
    env = received(city().grids.codes[0], rid="r1")
    data = env.data.model_dump(mode="json")
    del data["response_due"], data["resolution_due"]  # what a v1 RequestReceived carried
    case = case_from_document(v1_document(data))
    assert case.due_response == due_at(env.data.received_at, 2, "business", DEFAULT_CALENDAR)
    assert case.due_resolution == due_at(env.data.received_at, 48, "business", DEFAULT_CALENDAR)


def test_packed_v1_event_too():
    env = received(city().grids.codes[0], rid="r1")
    data = env.data.model_dump(mode="json")
    del data["response_due"], data["resolution_due"]
    assert case_from_document(v1_document(pack_json(data))).due_response is not None


def test_the_current_shape_round_trips_and_carries_no_received_blob():
    env = received(city().grids.codes[0], rid="r1")
    case = case_from_document(v1_document(pack_json(env.data.model_dump(mode="json"))))
    doc = case_to_document(case)
    assert doc["schema_version"] == SCHEMA_VERSION and "received" not in doc
    assert upcast_request(doc) == doc
    assert case_from_document(doc) == case


def test_events_kept_packed_by_an_earlier_version_are_still_published_again():
    from civicgrid_runtime.store import caused_events

    env = received(city().grids.codes[0], rid="r1")
    packed = {"_caused": pack_json([env.to_document()])}
    plain = {"_caused": [env.to_document()]}
    assert [e.id for e in caused_events([packed, plain])] == [env.id, env.id]
