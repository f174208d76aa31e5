"""Every older shape of an audit document that is still read, through the one upcaster path per
collection (adapters/documents.py), to today's shape."""

from __future__ import annotations

from datetime import UTC, datetime

import cramjam
import orjson
import pytest
from bson import Binary

from civicgrid_audit.adapters.auditlog import records_of
from civicgrid_audit.adapters.documents import (
    CURRENT,
    RECORD_FIELDS,
    request_summary,
    upcast,
)
from civicgrid_audit.domain import kpi
from civicgrid_runtime.store import pack_json

STATE = {"status": "assigned", "area_code": "110105001001001", "level": "grid", "escalations": [
    {"escalation_id": "R1|response|1", "clock": "response", "step": 1, "from_level": "grid", "to_level": "community",
     "due_at": "2026-11-02T04:00:00+00:00", "escalated_at": "2026-11-02T04:00:01+00:00", "department": None,
     "overdue_hours": 0.0}]}
TIMELINE = [{"id": "e1", "type": "request.received", "time": "2026-11-02T02:00:00+00:00", "data": {}}]
KC = {"all|*|2026-11-02": {"received": 1}}
KP = {"intake_requests_v1:3@000000000012": {"all|*|2026-11-02": {"received": 1}}}
#: what version 2 and before counted besides: a month bucket for every day bucket
KC_MONTHS = {**KC, "all|*|2026-11": {"received": 1}}
KP_MONTHS = {"intake_requests_v1:3@000000000012": {**KP["intake_requests_v1:3@000000000012"],
                                                   "all|*|2026-11": {"received": 1}}}


def zstd_blob(value) -> Binary:
    return Binary(bytes(cramjam.zstd.compress(orjson.dumps(value))))


@pytest.mark.parametrize("shape", ["plain, before versions", "packed with LZ4", "packed with zstd"])
def test_requests_of_every_older_shape_read_as_today(shape):
    base = {"_id": "R1", "status": "assigned", "area_code": STATE["area_code"], "open": True, "escalation_count": 1,
            "_kp": KP_MONTHS, "_v": 3, "_w": "token"}
    if shape == "plain, before versions":
        doc = {**base, "timeline": TIMELINE, "state": STATE, "_kc": KC_MONTHS}
    else:
        pack = pack_json if shape == "packed with LZ4" else zstd_blob
        doc = {**base, "_body": pack({"timeline": TIMELINE, "_kc": KC_MONTHS}), "_state": pack(STATE)}
    out = upcast("requests_00", doc)
    assert out["schema_version"] == CURRENT["requests"] == 4
    assert (out["timeline"], out["state"], out["kpi_contribution"], out["kpi_pending"]) == (
        TIMELINE, STATE, kpi.grouped(KC), KP)
    assert not {"_body", "_state", "_kc", "_kp"} & set(out)
    assert out["late_since"] == datetime(2026, 11, 2, 4, 0, tzinfo=UTC)
    assert (out["escalated_to"], out["last_escalated_clock"], out["open"]) == ("community", "response", True)
    assert (out["clocks"], out["deadline"], out["next_escalation_at"]) == ([], None, None)  # no deadlines in it


#: the state of a request received at 10:00 Shanghai time with calendar-hour limits (2 h to respond,
#: 24 h to resolve), assigned at grid level, escalated once on its response clock
RECEIVED = {**STATE, "received_at": "2026-11-02T02:00:00+00:00", "accepted_at": None,
            "time_limits": {"response_hours": 2, "resolution_hours": 24, "calendar": "calendar"},
            "response_due": "2026-11-02T04:00:00+00:00", "resolution_due": "2026-11-03T02:00:00+00:00",
            "dispatches": {}}


def test_requests_of_version_2_read_with_the_clocks_their_deadlines_documents_held():
    """Version 2 kept each clock in ``deadlines``; version 3 keeps them in the request, from its state."""
    doc = {"_id": "R1", "schema_version": 2, **request_summary(RECEIVED), "state": RECEIVED, "timeline": TIMELINE,
           "kpi_contribution": KC_MONTHS, "kpi_pending": KP_MONTHS, "_v": 4, "_w": "t"}
    out = upcast("requests_00", doc)
    assert out["schema_version"] == 4
    assert (out["kpi_contribution"], out["kpi_pending"]) == (kpi.grouped(KC), KP)  # month buckets: counted no more
    response, resolution = out["clocks"]
    # escalated once (to the community): the next step goes on to the street, one limit after the first
    assert (response["id"], response["active"], response["step"], response["level"]) == (
        "R1|response", True, 2, "community")
    assert response["due_at"] == datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    assert (resolution["step"], resolution["level"]) == (1, "grid")
    assert resolution["due_at"] == resolution["base_due"] == datetime(2026, 11, 3, 2, 0, tzinfo=UTC)
    assert out["deadline"] == datetime(2026, 11, 2, 4, 0, tzinfo=UTC)
    assert out["next_escalation_at"] == datetime(2026, 11, 2, 6, 0, tzinfo=UTC)


def test_a_request_of_today_is_read_as_it_is():
    entry = {"id": "e1", "type": "request.received", "time": "2026-11-02T02:00:00+00:00",
             "record": "intake_requests_v1:3#000000000012"}  # its payload in the audit log
    doc = {"_id": "R1", "schema_version": 4, **request_summary(STATE), "state": STATE, "timeline": [entry],
           "clocks": [], "deadline": None, "next_escalation_at": None,
           "kpi_contribution": kpi.grouped(KC), "kpi_pending": {}, "_v": 1, "_w": "t"}
    assert upcast("requests_00", dict(doc)) == doc


def test_requests_of_version_3_read_with_each_payload_in_its_entry_and_the_contribution_grouped():
    """Version 3 kept every entry's payload (``data``): today an entry without a ``record`` does; its
    contribution had a subdocument per counter: today the counters of the same metrics are together."""
    contribution = {**KC, "grid|g1|2026-11-02": {"received": 1}, "department|d1|2026-11-02": {"received": 1,
                                                                                            "dispatched": 1}}
    doc = {"_id": "R1", "schema_version": 3, **request_summary(STATE), "state": STATE, "timeline": TIMELINE,
           "clocks": [], "deadline": None, "next_escalation_at": None,
           "kpi_contribution": contribution, "kpi_pending": {}, "_v": 1, "_w": "t"}
    out = upcast("requests_00", dict(doc))
    assert out == {**doc, "schema_version": 4, "kpi_contribution": [
        {"metrics": {"received": 1}, "counters": ["all|*|2026-11-02", "grid|g1|2026-11-02"]},
        {"metrics": {"received": 1, "dispatched": 1}, "counters": ["department|d1|2026-11-02"]}]}
    assert kpi.expanded(out["kpi_contribution"]) == contribution


RECORDS = [{"seq": s, "offset": 100 + s, "event_id": f"e{s}", "raw": "{}", "leaf": f"{s:064x}", "prev": f"{s:064x}",
            "chain": f"{s + 1:064x}"} for s in range(3)]


def test_log_records_stored_one_per_document_before_versions_read_as_today():
    out = records_of({"_id": "log:0#000000000001", "log": "log:0", **RECORDS[1]})
    assert out == [{"log": "log:0", **RECORDS[1], "schema_version": 2}]


def test_log_blocks_of_version_1_read_as_their_records():
    block = {"_id": "log:0#000000000000", "log": "log:0", "seq": 0, "n": 3, "ids": ["e0", "e1", "e2"],
             "records": pack_json([[r[f] for f in RECORD_FIELDS] for r in RECORDS])}
    assert records_of(block) == [{"log": "log:0", **r, "schema_version": 2} for r in RECORDS]


def test_counters_sharded_by_partition_read_as_their_counter():
    shard = {"_id": "grid|g1|2026-11-02|p3", "dim": "grid", "key": "g1", "day": "2026-11-02", "m": {"received": 4}}
    out = upcast("kpi_counters_p3", shard)
    assert out["_id"] == "grid|g1|2026-11-02" and out["m"] == {"received": 4} and out["schema_version"] == 1
    assert upcast("kpi_counters", {"_id": "grid|g1|2026-11-02", "m": {}})["_id"] == "grid|g1|2026-11-02"


@pytest.mark.parametrize("collection", ["deadlines", "services", "log_heads", "checkpoints"])
def test_documents_written_before_versions_in_the_same_shape_read_as_version_1(collection):
    doc = {"_id": "x", "field": 1}
    assert upcast(collection, dict(doc)) == {**doc, "schema_version": 1}


@pytest.mark.parametrize("version", [None, 1])
def test_escalation_claims_of_before_they_kept_their_event_read_as_version_2(version):
    until = datetime(2026, 11, 2, 4, 0, 30, tzinfo=UTC)
    doc = {"_id": "R1|response|1", "by": "audit-1", "until": until, "done": True}
    if version is not None:
        doc["schema_version"] = version
    out = upcast("escalation_claims", doc)
    assert out == {"_id": "R1|response|1", "by": "audit-1", "until": until, "done": True, "at": None,
                   "schema_version": 2}
    assert "_caused" not in out  # its event went out through a deadlines document's outbox


def test_a_version_without_an_upcaster_is_an_error_not_a_silent_misread():
    with pytest.raises(ValueError, match="no upcaster"):
        upcast("deadlines", {"_id": "x", "schema_version": -1})
