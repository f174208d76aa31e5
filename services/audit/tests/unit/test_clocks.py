"""A request's clocks follow from its folded state (domain/clocks.py): the first escalation at the
deadline the event carried, each next one a period after the one before, one level up each time;
a step's due time stays once set; a stopped clock and a clock at the district escalate no more."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from civicgrid_audit.adapters.projection import fold_document, still_pending
from civicgrid_audit.domain import clocks, timeline
from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import DEFAULT_CALENDAR, OFFICIAL_2026, WorkingCalendar, due_at
from civicgrid_contracts.events.audit import RequestEscalated
from civicgrid_contracts.events.grid import (
    DepartmentDispatched,
    DepartmentReported,
    RequestAccepted,
    RequestAssigned,
)
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_contracts.values import AreaPath, Location, TimeLimits

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
AREA = AreaPath(district="110105", street="110105001", community="110105001001", grid="110105001001001")
LIMITS = TimeLimits(response_hours=2, resolution_hours=24, calendar="calendar")


def received(rid: str = "R1") -> Envelope:
    return Envelope.wrap(RequestReceived.starting_clocks(
        DEFAULT_CALENDAR, request_id=rid, service_code="S1", service_name="repair", location=Location(),
        description="x", channel="app", received_at=T0, time_limits=LIMITS), source="/civicgrid/intake")


def assigned(rid: str = "R1", level: str = "grid") -> Envelope:
    return Envelope.wrap(RequestAssigned(request_id=rid, area=AREA, assignee_id="staff-1", holder="A", reason="A",
                                         map_version=1, level=level, assigned_at=T0 + timedelta(minutes=5)),
                         source="/civicgrid/grid")


def escalated(clock: dict, *, at: datetime, rid: str = "R1") -> Envelope:
    return Envelope.wrap(RequestEscalated(
        request_id=rid, escalation_id=f"{clock['id']}|{clock['step']}", clock=clock["clock"], step=clock["step"],
        from_level=clock["level"], to_level=timeline.next_level(clock["level"]), due_at=clock["due_at"],
        escalated_at=at, overdue_hours=0.0, department=clock["department"]), source="/civicgrid/audit")


def state_of(*envs: Envelope) -> dict:
    return timeline.fold([timeline.entry_from_envelope(e, topic="t", partition=0, offset=i)
                          for i, e in enumerate(envs)])


def by_clock(cs: list[dict]) -> dict[str, dict]:
    return {c["clock"] if c["clock"] != "report_back" else f"report_back|{c['department']}": c for c in cs}


def test_the_first_escalation_falls_due_at_the_deadline_the_event_carried():
    rec = received()
    cs = by_clock(clocks.clocks_of("R1", state_of(rec, assigned()), DEFAULT_CALENDAR))
    assert cs["response"] == {
        "id": "R1|response", "clock": "response", "department": None, "dispatch_id": None,
        "base_due": rec.data.response_due, "active": True, "step": 1, "level": "grid",
        "due_at": rec.data.response_due, "period_hours": 2, "business": False}
    assert cs["resolution"]["due_at"] == rec.data.resolution_due
    assert clocks.summary(list(cs.values())) == {"deadline": rec.data.response_due,
                                                 "next_escalation_at": rec.data.response_due}


def test_each_escalation_moves_the_clock_one_level_up_and_one_period_on():
    rec, asg = received(), assigned()
    first = by_clock(clocks.clocks_of("R1", state_of(rec, asg), DEFAULT_CALENDAR))["response"]
    esc1 = escalated(first, at=rec.data.response_due + timedelta(seconds=1))
    second = by_clock(clocks.clocks_of("R1", state_of(rec, asg, esc1), DEFAULT_CALENDAR))["response"]
    assert (second["step"], second["level"]) == (2, "community")
    assert second["due_at"] == rec.data.response_due + timedelta(hours=2)  # the limit again (calendar hours)
    # a platform-wide period, when set, instead of the clock's own limit
    repeated = by_clock(clocks.clocks_of("R1", state_of(rec, asg, esc1), DEFAULT_CALENDAR, repeat_hours=5))
    assert repeated["response"]["due_at"] == rec.data.response_due + timedelta(hours=5)
    esc2 = escalated(second, at=second["due_at"] + timedelta(seconds=1))
    third = by_clock(clocks.clocks_of("R1", state_of(rec, asg, esc1, esc2), DEFAULT_CALENDAR))["response"]
    assert (third["step"], third["level"], third["due_at"]) == (3, "street", second["due_at"] + timedelta(hours=2))


def test_a_steps_due_time_stays_once_set_whatever_the_calendar_did_since():
    limits = TimeLimits(response_hours=2, resolution_hours=24, calendar="business")
    rec = Envelope.wrap(RequestReceived.starting_clocks(
        DEFAULT_CALENDAR, request_id="R1", service_code="S1", service_name="repair", location=Location(),
        description="x", channel="app", received_at=T0, time_limits=limits), source="/civicgrid/intake")
    state = state_of(rec, assigned())
    first = by_clock(clocks.clocks_of("R1", state, DEFAULT_CALENDAR))["response"]
    state = state_of(rec, assigned(), escalated(first, at=first["due_at"]))
    before = clocks.clocks_of("R1", state, DEFAULT_CALENDAR)
    holiday = date(2026, 11, 2)  # the next working hours of that Monday become a holiday
    later = WorkingCalendar([OFFICIAL_2026.model_copy(update={"holidays": (*OFFICIAL_2026.holidays, holiday)})])
    assert due_at(first["due_at"], 2, "business", later) != due_at(first["due_at"], 2, "business", DEFAULT_CALENDAR)
    again = clocks.clocks_of("R1", state, later, before=before)
    assert by_clock(again)["response"]["due_at"] == by_clock(before)["response"]["due_at"]
    assert by_clock(clocks.clocks_of("R1", state, later))["response"]["due_at"] != by_clock(before)["response"]["due_at"]


def test_a_stopped_clock_and_a_clock_at_the_district_escalate_no_more():
    rec = received()
    acc = Envelope.wrap(RequestAccepted(request_id="R1", staff_id="staff-1", accepted_at=T0 + timedelta(minutes=30)),
                        source="/civicgrid/grid")
    cs = by_clock(clocks.clocks_of("R1", state_of(rec, assigned(), acc), DEFAULT_CALENDAR))
    assert not cs["response"]["active"] and cs["response"]["due_at"] is None
    assert clocks.summary(list(cs.values())) == {"deadline": rec.data.resolution_due,
                                                 "next_escalation_at": rec.data.resolution_due}
    at_district = by_clock(clocks.clocks_of("R1", state_of(rec, assigned(level="district")), DEFAULT_CALENDAR))
    assert at_district["response"]["active"] and at_district["response"]["due_at"] is None


def test_each_department_dispatched_has_its_report_back_clock_until_it_reports():
    rec, asg = received(), assigned()
    report_by = T0 + timedelta(hours=10)
    disp = Envelope.wrap(DepartmentDispatched(request_id="R1", dispatch_id="d1", departments=("chengguan", "police"),
                                              joint=True, report_by=report_by, reason="enforcement",
                                              dispatched_at=T0 + timedelta(hours=1)), source="/civicgrid/grid")
    rep = Envelope.wrap(DepartmentReported(request_id="R1", dispatch_id="d1", department="police", outcome="ok",
                                           reported_at=T0 + timedelta(hours=2), all_reported=False),
                        source="/civicgrid/grid")
    cs = by_clock(clocks.clocks_of("R1", state_of(rec, asg, disp, rep), DEFAULT_CALENDAR))
    chengguan, police = cs["report_back|chengguan"], cs["report_back|police"]
    assert chengguan["id"] == "R1|report_back|d1|chengguan" and chengguan["active"]
    assert chengguan["due_at"] == report_by and chengguan["period_hours"] == 24  # the resolution limit
    assert not police["active"] and police["due_at"] is None


def test_the_request_document_keeps_its_clocks_and_their_indexed_summary():
    rec = received()
    entries = [timeline.entry_from_envelope(e, topic="t", partition=0, offset=i) for i, e in enumerate([rec])]
    doc, delta = fold_document("R1", None, entries, DEFAULT_CALENDAR, kp={})
    assert [c["clock"] for c in doc["clocks"]] == ["response", "resolution"]
    assert doc["deadline"] == doc["next_escalation_at"] == rec.data.response_due
    assert delta  # received: its first contribution


def test_a_write_keeps_the_pending_deltas_not_yet_counted():
    pending = {"intake_requests_v1:3@000000000010": {"a": {"received": 1}},
               "intake_requests_v1:3@000000000020": {"b": {"received": 1}},
               "grid_assignments_v1:3@000000000005": {"c": {"counted": 1}}}
    # every delta of intake's partition 3 up to offset 19 is counted; nothing is known of the others
    counted = {"intake_requests_v1:3": 19}
    assert set(still_pending(pending, lambda p: counted.get(p, -1))) == {
        "intake_requests_v1:3@000000000020", "grid_assignments_v1:3@000000000005"}
    assert still_pending(pending, lambda p: -1) == pending
