"""Timeline order with out-of-order delivery across topics; the same event twice changes nothing;
'as of' queries; the request's clocks on the deadlines the received event carries (with the real stack)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import DEFAULT_CALENDAR, OFFICIAL_2026, WorkingCalendar
from civicgrid_contracts.events.grid import RequestAccepted, RequestAssigned, RequestResolved
from civicgrid_contracts.events.intake import RequestClosed, RequestRated, RequestReceived
from civicgrid_contracts.values import AreaPath, Location, TimeLimits
from civicgrid_runtime.testing import unique

from .conftest import eventually, settle, start_audit

SH = ZoneInfo("Asia/Shanghai")


def lifecycle(rid: str, t0: datetime, limits: TimeLimits | None = None,
              calendar: WorkingCalendar = DEFAULT_CALENDAR) -> list[Envelope]:
    area = AreaPath(district="110105", street="110105001", community="110105001001", grid="110105001001001")
    src_i, src_g = "/civicgrid/intake", "/civicgrid/grid"
    return [
        Envelope.wrap(RequestReceived.starting_clocks(calendar, request_id=rid, service_code="S1", service_name="repair",
                                      time_limits=limits or TimeLimits(response_hours=2, resolution_hours=24),
                                      location=Location(), description="leak", channel="app", received_at=t0),
                      source=src_i),
        Envelope.wrap(RequestAssigned(request_id=rid, area=area, assignee_id="staff-1", holder="A", reason="A",
                                      map_version=1, assigned_at=t0 + timedelta(minutes=5)), source=src_g),
        Envelope.wrap(RequestAccepted(request_id=rid, staff_id="staff-1", accepted_at=t0 + timedelta(minutes=30)),
                      source=src_g),
        Envelope.wrap(RequestResolved(request_id=rid, staff_id="staff-1", resolution_note="fixed",
                                      resolved_at=t0 + timedelta(hours=5)), source=src_g),
        Envelope.wrap(RequestRated(request_id=rid, rating="satisfied", rated_at=t0 + timedelta(hours=6)), source=src_i),
        Envelope.wrap(RequestClosed(request_id=rid, reason="rated", closed_at=t0 + timedelta(hours=6, minutes=1)),
                      source=src_i),
    ]


async def test_timeline_order_with_out_of_order_delivery_and_duplicates(audit):
    rid = unique("REQ")
    t0 = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    rec, asg, acc, res, rat, clo = lifecycle(rid, t0)
    pub = audit.runtime.publisher
    # grid's events first, then intake's (a lagging topic), then everything again (redelivery)
    await pub.publish_many([asg, acc, res])
    await pub.publish_many([clo, rat, rec])
    await pub.publish_many([rec, asg, acc, res, rat, clo])

    mine = {e.id for e in (rec, asg, acc, res, rat, clo)}

    def own(timeline: list[dict]) -> list[dict]:
        """This test's entries (the topics are shared: another platform's grid may react to the request)."""
        return [e for e in timeline if e["id"] in mine]

    async def complete():
        doc = await audit.queries.request(rid)
        return doc if doc and len(own(doc["timeline"])) == 6 and doc["state"]["status"] == "closed" else None

    doc = await eventually(complete)
    entries = own(doc["timeline"])
    assert [e["type"] for e in entries] == ["request.received", "request.assigned", "request.accepted",
                                            "request.resolved", "request.rated", "request.closed"]
    assert [e["service"] for e in entries] == ["intake", "grid", "grid", "grid", "intake", "intake"]
    assert entries[2]["who"] == "staff-1"
    st = doc["state"]
    assert st["accepted_at"] == (t0 + timedelta(minutes=30)).isoformat() and st["rating"] == "satisfied"
    # the timeline holds each event once; the trail keeps every message consumed (each was published
    # twice; the second copies may still be on their way when the projection is already complete)
    async def trail_has_both_copies():
        ids = [e.id for e in (rec, acc, clo)]
        n = await audit.runtime.db["log_records"].count_documents({"event_id": {"$in": ids}})
        assert n <= 6, f"{n} records for 3 events published twice"
        return n == 6

    await eventually(trail_has_both_copies)
    assert len(own((await audit.queries.request(rid))["timeline"])) == 6, "the copies added nothing to the timeline"
    # "as of": just after acceptance the request was accepted, not resolved
    past = await audit.queries.request(rid, as_of=t0 + timedelta(hours=1))
    assert past["state"]["status"] == "accepted" and len(past["timeline"]) == 3


async def test_clocks_run_to_the_deadlines_carried_in_the_event(infra, mongo):
    """Audit's clocks are the instants intake set in RequestReceived (here on a calendar with a
    Monday holiday audit itself does not hold), never a computation of its own."""
    db = unique("audit_cal")
    # no scanner: the dates are fixed and now in the past, so it would escalate the clock (moving
    # due_at) before the assertions read it; escalation has its own tests
    svc = await start_audit(infra, database=db, group=unique("audit_grp"), scan=False)
    try:
        await settle(svc)
        rid = unique("REQ")
        friday_5pm = datetime(2026, 11, 27, 17, 0, tzinfo=SH)
        with_holiday = WorkingCalendar([OFFICIAL_2026.model_copy(
            update={"holidays": (*OFFICIAL_2026.holidays, date(2026, 11, 30))})])
        rec = lifecycle(rid, friday_5pm.astimezone(UTC),
                        TimeLimits(response_hours=2, resolution_hours=8, calendar="business"), with_holiday)[0]
        await svc.runtime.publisher.publish(rec)

        async def clocks():
            doc = await svc.runtime.db["requests_00"].find_one({"_id": rid})
            return {c["clock"]: c for c in doc["clocks"]} if doc else None

        d = await eventually(clocks)
        # 1 h on Friday (17-18), weekend, Monday holiday, then Tuesday 09:00-10:00
        assert d["response"]["base_due"] == datetime(2026, 12, 1, 10, 0, tzinfo=SH) == rec.data.response_due
        # 8 h: Friday 1 h + Tuesday 09-12 (3) + 13:30-17:30 (4)
        assert d["resolution"]["base_due"] == datetime(2026, 12, 1, 17, 30, tzinfo=SH) == rec.data.resolution_due
        assert d["response"]["active"] and d["response"]["due_at"] == d["response"]["base_due"]
        # the request's indexed clock fields: the earliest deadline and the first escalation to decide
        doc = await svc.runtime.db["requests_00"].find_one({"_id": rid})
        assert doc["deadline"] == doc["next_escalation_at"] == rec.data.response_due
    finally:
        await svc.runtime.stop()
        await mongo.drop_database(db)
