"""The supervision lists' rows, from a request document as the projection writes it: a row per
running clock past its deadline (overdue), one per escalated request (escalated)."""

from __future__ import annotations

from datetime import timedelta

from civicgrid_audit.adapters.projection import fold_document
from civicgrid_audit.adapters.queries import ESCALATED_FIELDS, OVERDUE_FIELDS, escalated_row, overdue_rows
from civicgrid_audit.domain import timeline
from civicgrid_contracts.calendar import DEFAULT_CALENDAR

from .test_clocks import T0, assigned, escalated, received


def document(*envs):
    entries = [timeline.entry_from_envelope(e, topic="t", partition=0, offset=i) for i, e in enumerate(envs)]
    doc, _ = fold_document("R1", None, entries, DEFAULT_CALENDAR, kp={})
    return doc


def listed(doc: dict, fields: dict) -> dict:
    """What the list's query reads of the document."""
    return {k: v for k, v in doc.items() if k == "_id" or k in fields}


def test_a_row_per_running_clock_past_its_deadline():
    rec = received()
    doc = listed(document(rec, assigned()), OVERDUE_FIELDS)
    assert overdue_rows(doc, rec.data.response_due - timedelta(minutes=1), DEFAULT_CALENDAR) == []
    now = rec.data.response_due + timedelta(hours=1, minutes=30)
    assert overdue_rows(doc, now, DEFAULT_CALENDAR) == [{
        "request_id": "R1", "clock": "response", "department": None, "area_code": "110105001001001",
        "due_at": rec.data.response_due.isoformat(), "overdue_hours": 1.5, "overdue_calendar_hours": 1.5,
        "escalation_steps": 0, "level": "grid"}]
    late_on_both = rec.data.resolution_due + timedelta(hours=1)
    assert [r["clock"] for r in overdue_rows(doc, late_on_both, DEFAULT_CALENDAR)] == ["response", "resolution"]


def test_an_escalated_request_lists_its_summary_and_how_late_it_is():
    rec, asg = received(), assigned()
    clock = next(c for c in document(rec, asg)["clocks"] if c["clock"] == "response")
    doc = document(rec, asg, escalated(clock, at=rec.data.response_due + timedelta(seconds=1)))
    row = escalated_row(listed(doc, ESCALATED_FIELDS), T0 + timedelta(hours=5))
    assert row == {"request_id": "R1", "area_code": "110105001001001", "status": "assigned", "escalations": 1,
                   "level": "community", "last_clock": "response", "late_since": rec.data.response_due.isoformat(),
                   "late_hours": 3.0}
    # the escalated step leaves its clock running, one step on
    assert overdue_rows(listed(doc, OVERDUE_FIELDS), T0 + timedelta(hours=5), DEFAULT_CALENDAR)[0][
        "escalation_steps"] == 1
