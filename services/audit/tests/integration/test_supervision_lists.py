"""The supervision lists against the real store: the right rows, most late first, by area, within
the limit; request documents of an older shape rewritten once at start (adapters/upgrade.py) and
listed like today's, also when two replicas start at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from civicgrid_audit.adapters.documents import CURRENT, MIGRATIONS, request_summary
from civicgrid_audit.adapters.projection import fold_document, stored_document
from civicgrid_audit.adapters.queries import Queries
from civicgrid_audit.adapters.upgrade import upgrade_requests
from civicgrid_audit.domain import clocks, kpi, timeline
from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import DEFAULT_CALENDAR
from civicgrid_contracts.events.audit import RequestEscalated
from civicgrid_contracts.events.grid import RequestAccepted, RequestAssigned, RequestResolved
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_contracts.values import AreaPath, Location, TimeLimits
from civicgrid_runtime.calendar import FixedCalendar
from civicgrid_runtime.store import pack_json

NOW = datetime.now(UTC).replace(microsecond=0)
LIMITS = TimeLimits(response_hours=2, resolution_hours=24, calendar="calendar")
STREET_1, STREET_2 = "110105001", "110105002"


def area(street: str) -> AreaPath:
    return AreaPath(district="110105", street=street, community=f"{street}001", grid=f"{street}001001")


def history(rid: str, street: str, received_hours_ago: float, *, accepted_after: float | None = None,
            resolved_after: float | None = None, escalate: bool = True) -> list[dict]:
    """The timeline entries of a request received that long before NOW (hours after receipt for the
    rest), each clock late at NOW escalated once at its deadline, as the scanner would have."""
    received = NOW - timedelta(hours=received_hours_ago)
    envs = [Envelope.wrap(RequestReceived.starting_clocks(
        DEFAULT_CALENDAR, request_id=rid, service_code="S1", service_name="repair", location=Location(),
        description="x", channel="app", received_at=received, time_limits=LIMITS), source="/civicgrid/intake"),
        Envelope.wrap(RequestAssigned(request_id=rid, area=area(street), assignee_id="staff-1", holder="A", reason="A",
                                      map_version=1, assigned_at=received + timedelta(minutes=1)),
                      source="/civicgrid/grid")]
    if accepted_after is not None:
        envs.append(Envelope.wrap(RequestAccepted(request_id=rid, staff_id="staff-1", accepted_at=received + timedelta(
            hours=accepted_after)), source="/civicgrid/grid"))
    entries = [timeline.entry_from_envelope(e, topic="t", partition=0, offset=i) for i, e in enumerate(envs)]
    if escalate:
        state = timeline.fold(entries)
        for c in clocks.clocks_of(rid, state, DEFAULT_CALENDAR):
            if c["active"] and c["due_at"] is not None and c["due_at"] < NOW:
                entries.append(timeline.entry_from_envelope(escalation(rid, c), topic="t", partition=0,
                                                            offset=len(entries)))
    if resolved_after is not None:
        entries.append(timeline.entry_from_envelope(Envelope.wrap(RequestResolved(
            request_id=rid, staff_id="staff-1", resolution_note="done",
            resolved_at=received + timedelta(hours=resolved_after)), source="/civicgrid/grid"), topic="t", partition=0,
            offset=len(entries)))
    return entries


def escalation(rid: str, clock: dict) -> Envelope:
    at = clock["due_at"] + timedelta(seconds=1)
    return Envelope.wrap(RequestEscalated(
        request_id=rid, escalation_id=f"{clock['id']}|{clock['step']}", clock=clock["clock"], step=clock["step"],
        from_level=clock["level"], to_level=timeline.next_level(clock["level"]), due_at=clock["due_at"],
        escalated_at=at, overdue_hours=0.0, department=None), source="/civicgrid/audit", time=at)


def document(rid: str, entries: list[dict]) -> dict:
    doc, _ = fold_document(rid, None, entries, DEFAULT_CALENDAR, kp={})
    return stored_document(doc)


async def test_the_lists_give_the_late_and_escalated_requests_of_an_area_most_late_first(fresh_db):
    requests = {
        "A": history("A", STREET_1, 10),  # response late 8 h, escalated
        "B": history("B", STREET_2, 5),  # response late 3 h, escalated
        "C": history("C", STREET_1, 20, resolved_after=6),  # escalated, then resolved: on neither list
        "D": history("D", STREET_1, 1),  # not late yet
        "E": history("E", STREET_2, 30, accepted_after=0.5, escalate=False),  # resolution late 6 h, not escalated
    }
    await fresh_db["requests_00"].insert_many([document(rid, e) for rid, e in requests.items()])
    q = Queries(fresh_db, FixedCalendar())

    escalated = await q.escalated("", now=NOW)
    assert [(r["request_id"], r["status"], r["escalations"], r["level"], r["last_clock"], r["late_hours"])
            for r in escalated] == [("A", "assigned", 1, "community", "response", 8.0),
                                    ("B", "assigned", 1, "community", "response", 3.0)]
    assert [r["request_id"] for r in await q.escalated(STREET_1, now=NOW)] == ["A"]
    assert [r["request_id"] for r in await q.escalated("", now=NOW, limit=1)] == ["A"]

    overdue = await q.overdue("", now=NOW)
    assert [(r["request_id"], r["clock"], r["overdue_calendar_hours"], r["escalation_steps"], r["level"])
            for r in overdue] == [("A", "response", 8.0, 1, "community"), ("E", "resolution", 6.0, 0, "grid"),
                                  ("B", "response", 3.0, 1, "community")]
    assert [r["request_id"] for r in await q.overdue(STREET_2, now=NOW)] == ["E", "B"]
    assert [r["request_id"] for r in await q.overdue("", now=NOW, limit=2)] == ["A", "E"]


def older_documents() -> dict[str, dict]:
    """A request stored before versions (its state packed) and one of version 2 (its clocks in
    ``deadlines``), both late and escalated, neither written since."""
    v1_state = timeline.fold(history("OLD1", STREET_1, 10))
    v1 = {"_id": "OLD1", "status": v1_state["status"], "area_code": v1_state["area_code"], "open": True,
          "escalation_count": 1, "_body": pack_json({"timeline": [], "_kc": {}}), "_state": pack_json(v1_state),
          "_kp": {}, "_v": 5, "_w": "w"}
    entries = history("OLD2", STREET_2, 5)
    v2_state = timeline.fold(entries)
    v2 = {"_id": "OLD2", "schema_version": 2, **request_summary(v2_state), "state": v2_state, "timeline": entries,
          "kpi_contribution": kpi.contributions(v2_state, DEFAULT_CALENDAR), "kpi_pending": {}, "_v": 2, "_w": "w"}
    return {"OLD1": v1, "OLD2": v2}


async def test_older_shapes_are_rewritten_once_and_listed_like_todays(fresh_db):
    older = older_documents()
    await fresh_db["requests_00"].insert_many([*older.values(), document("NEW", history("NEW", STREET_1, 7))])
    await fresh_db["deadlines"].insert_one({  # where version 2 kept the running clock (no longer read)
        "_id": "OLD2|response", "schema_version": 1, "request_id": "OLD2", "clock": "response", "active": True,
        "base_due": NOW - timedelta(hours=3), "due_at": NOW - timedelta(hours=1), "area_code": "x"})

    assert await upgrade_requests(fresh_db) == 2
    for rid, before in older.items():
        doc = await fresh_db["requests_00"].find_one({"_id": rid})
        assert (doc["schema_version"], doc["_v"]) == (CURRENT["requests"], before["_v"] + 1)
        assert not {"_body", "_state", "_kp"} & set(doc)
    marker = await fresh_db[MIGRATIONS].find_one({"_id": "requests_00@3"})
    assert (marker["rewritten"], marker["schema_version"]) == (2, 1)
    assert await upgrade_requests(fresh_db) is None  # once: later starts read the marker only

    q = Queries(fresh_db, FixedCalendar())
    assert [r["request_id"] for r in await q.escalated("", now=NOW)] == ["OLD1", "NEW", "OLD2"]
    assert [(r["request_id"], r["clock"]) for r in await q.overdue("", now=NOW)] == [
        ("OLD1", "response"), ("NEW", "response"), ("OLD2", "response")]


async def test_two_replicas_starting_at_once_rewrite_each_document_once(fresh_db):
    older = older_documents()
    await fresh_db["requests_00"].insert_many(list(older.values()))
    counts = await asyncio.gather(upgrade_requests(fresh_db), upgrade_requests(fresh_db))
    assert sum(c or 0 for c in counts) == len(older)
    assert {d["_v"] async for d in fresh_db["requests_00"].find({})} == {older["OLD1"]["_v"] + 1,
                                                                        older["OLD2"]["_v"] + 1}
    assert await fresh_db[MIGRATIONS].count_documents({}) == 1
