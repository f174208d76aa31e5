"""A request document names each event's audit-log record instead of repeating its payload
(requests version 4, docs/adr/0604): later events fold on from the stored state; an event that
arrives out of order folds the timeline again from the first entry, with the payloads read from
the log -- the same document either way."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import bson
import pytest

from civicgrid_audit.adapters.projection import (
    PayloadsNotLoaded,
    fold_document,
    payloads_needed,
    stored_document,
    with_needed_payloads,
)
from civicgrid_audit.domain import kpi, timeline
from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import DEFAULT_CALENDAR
from civicgrid_contracts.events.grid import RequestAccepted, RequestResolved

from .test_clocks import T0, assigned, escalated, received


class FakeLog:
    """The audit log's records by ``_id`` (what ``AuditLog.payloads`` reads)."""

    def __init__(self) -> None:
        self.records: dict[str, dict] = {}
        self.reads: list[list[str]] = []

    def record(self, env: Envelope, offset: int) -> dict:
        entry = timeline.entry_from_envelope(env, topic="t", partition=0, offset=offset)
        entry["record"] = f"t:0#{offset:012d}"
        self.records[entry["record"]] = entry["data"]
        return entry

    async def payloads(self, ids: list[str]) -> dict[str, dict]:
        self.reads.append(list(ids))
        return {i: self.records[i] for i in ids if i in self.records}


def as_stored(doc: dict) -> dict:
    """Written and read back (the store's round trip: no payload where the record is named)."""
    return bson.decode(bson.encode(stored_document(doc)), codec_options=bson.CodecOptions(tz_aware=True))


def events():
    rec, asg = received(), assigned()
    clock = next(c for c in fold_document("R1", None, [timeline.entry_from_envelope(e, topic="t", partition=0, offset=i)
                                                      for i, e in enumerate((rec, asg))], DEFAULT_CALENDAR,
                                          kp={})[0]["clocks"] if c["clock"] == "response")
    esc = escalated(clock, at=rec.data.response_due + timedelta(seconds=1))
    acc = Envelope.wrap(RequestAccepted(request_id="R1", staff_id="staff-1",
                                        accepted_at=rec.data.response_due + timedelta(minutes=30)), source="/civicgrid/grid")
    res = Envelope.wrap(RequestResolved(request_id="R1", staff_id="staff-1", resolution_note="fixed",
                                        resolved_at=T0 + timedelta(hours=6)), source="/civicgrid/grid")
    return [rec, asg, esc, acc, res]


def comparable(doc: dict) -> dict:
    return {k: v for k, v in stored_document(doc).items() if k not in ("_w", "_v")}


def test_the_stored_timeline_names_records_instead_of_payloads():
    log = FakeLog()
    entries = [log.record(e, i) for i, e in enumerate(events())]
    doc, _ = fold_document("R1", None, entries, DEFAULT_CALENDAR, kp={})
    stored = stored_document(doc)
    assert all("data" not in e and e["record"] for e in stored["timeline"])
    assert [e["type"] for e in stored["timeline"]] == [
        "request.received", "request.assigned", "request.escalated", "request.accepted", "request.resolved"]
    # the contribution grouped: the same metrics once for the counters that get them
    assert kpi.expanded(stored["kpi_contribution"]) == kpi.contributions(doc["state"], DEFAULT_CALENDAR)
    assert len(stored["kpi_contribution"]) == 1 and len(stored["kpi_contribution"][0]["counters"]) == 7
    # an entry whose record is not named (its event was in the log already when it was folded) keeps it
    unnamed = {k: v for k, v in entries[0].items() if k != "record"}
    assert stored_document({**doc, "timeline": [unnamed]})["timeline"] == [unnamed]


def test_events_in_order_fold_on_from_the_stored_state_without_reading_the_log():
    log = FakeLog()
    entries = [log.record(e, i) for i, e in enumerate(events())]
    at_once, _ = fold_document("R1", None, entries, DEFAULT_CALENDAR, kp={})
    doc = None
    for e in entries:  # one batch each, as the live projection may
        if doc is not None:
            assert payloads_needed(doc, [e]) == []
        doc, _ = fold_document("R1", doc and as_stored(doc), [e], DEFAULT_CALENDAR, kp={})
    assert comparable(doc) == comparable(at_once)
    assert log.reads == []


def test_an_event_out_of_order_folds_again_with_the_payloads_from_the_log():
    log = FakeLog()
    rec, asg, esc, acc, res = [log.record(e, i) for i, e in enumerate(events())]
    at_once, _ = fold_document("R1", None, [rec, asg, esc, acc, res], DEFAULT_CALENDAR, kp={})
    first, _ = fold_document("R1", None, [rec, asg, esc, res], DEFAULT_CALENDAR, kp={})
    stored = as_stored(first)
    with pytest.raises(PayloadsNotLoaded):  # the acceptance sorts before the resolution folded already
        fold_document("R1", stored, [acc], DEFAULT_CALENDAR, kp={})
    assert [e["id"] for e in payloads_needed(stored, [acc])] == [rec["id"], asg["id"], esc["id"], res["id"]]
    loaded = asyncio.run(with_needed_payloads(log, {"R1": stored}, {"R1": [acc]}))
    assert len(log.reads) == 1  # one read by _id for every document of the batch
    doc, _ = fold_document("R1", loaded["R1"], [acc], DEFAULT_CALENDAR, kp={})
    assert comparable(doc) == comparable(at_once)
    assert doc["state"]["accepted_at"] is not None and doc["state"]["status"] == "resolved"


def test_a_record_missing_from_the_log_is_named():
    log = FakeLog()
    rec, asg, esc, acc, res = [log.record(e, i) for i, e in enumerate(events())]
    stored = as_stored(fold_document("R1", None, [rec, asg, esc, res], DEFAULT_CALENDAR, kp={})[0])
    del log.records[asg["record"]]
    with pytest.raises(PayloadsNotLoaded, match=asg["record"]):
        asyncio.run(with_needed_payloads(log, {"R1": stored}, {"R1": [acc]}))
