"""A request's time-limit clocks and when each escalates next: a pure function of its folded state.

A clock (response, resolution, a department's report-back) runs from the deadline carried in the
event that started it (``timeline.clocks``). Its escalations are the ``RequestEscalated`` events
folded into the state: the clock has escalated ``step - 1`` times, the next escalation goes one
level up from ``level`` (the request's assigned level, or where its last escalation on this clock
took it), and falls due at ``due_at``: the deadline itself for the first one, then one period
(``repeat_hours``, else the clock's own limit) after the due time of the escalation before it, on
the working calendar. A clock whose request reached the district, or that stopped, has no
``due_at``. The due time of a step is set once, when the step is reached (``before``: the clocks
as stored; a step already there keeps its due time whatever the calendar did since).

Nothing here is written by the scanner: an escalation changes the clock when its event comes back
through the bus and is folded like any other, so the request document is the one record of its
clocks and the scanner's only writes are its claims (adapters/scanner.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from civicgrid_audit.domain import timeline
from civicgrid_contracts.calendar import WorkingCalendar, due_at
from civicgrid_contracts.values import Calendar

#: the period between repeated escalations of a clock without a limit of its own
DEFAULT_PERIOD_HOURS = 24.0


def kind_of(clock: dict[str, Any]) -> Calendar:
    """Whether a clock counts working hours or wall-clock hours."""
    return "business" if clock.get("business", True) else "calendar"


def _period(state: dict[str, Any], clock: str) -> float | None:
    limits = state.get("time_limits") or {}
    if clock == "report_back":
        return limits.get("report_back_hours") or limits.get("resolution_hours")
    return limits.get(f"{clock}_hours")


def clocks_of(request_id: str, state: dict[str, Any], calendar: WorkingCalendar, *, repeat_hours: float | None = None,
              before: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every clock of the request (running or stopped), each a plain dict: ``id`` (the escalation ids'
    prefix), ``clock``, ``department``, ``dispatch_id``, ``base_due``, ``active``, ``step`` (the next
    escalation's), ``level`` (the next escalation goes one up from it), ``due_at`` (None: none will
    come), ``period_hours``, ``business``."""
    kept = {c["id"]: c for c in before or []}
    business = (state.get("time_limits") or {}).get("calendar", "business") == "business"
    out = []
    for c in timeline.clocks(state):
        cid = timeline.clock_id(request_id, c)
        done = sorted((e for e in state.get("escalations") or []
                       if e["clock"] == c["clock"] and e.get("department") == c["department"]),
                      key=lambda e: int(e["step"]))
        step = int(done[-1]["step"]) + 1 if done else 1
        level = timeline.higher_level(state.get("level"), done[-1]["to_level"] if done else None)
        clock = {"id": cid, "clock": c["clock"], "department": c["department"], "dispatch_id": c["dispatch_id"],
                 "base_due": timeline.parse_time(c["base_due"]), "active": c["active"], "step": step, "level": level,
                 "due_at": None, "period_hours": _period(state, c["clock"]), "business": business}
        if c["active"] and timeline.next_level(level) is not None:
            old = kept.get(cid)
            if old is not None and old.get("step") == step and old.get("due_at") is not None:
                clock["due_at"] = timeline.parse_time(old["due_at"])  # set when the step was reached: it stays
            elif not done:
                clock["due_at"] = clock["base_due"]
            else:
                period = repeat_hours or clock["period_hours"] or DEFAULT_PERIOD_HOURS
                clock["due_at"] = due_at(timeline.parse_time(done[-1]["due_at"]), period, kind_of(clock), calendar)
        out.append(clock)
    return out


def summary(clocks: list[dict[str, Any]]) -> dict[str, datetime | None]:
    """The request's indexed clock fields: ``deadline``, the earliest deadline of its running clocks
    (an operator's "open requests past their deadline"), and ``next_escalation_at``, when the scanner
    next has something to decide (None: nothing runs)."""
    running = [c for c in clocks if c["active"]]
    return {"deadline": min((c["base_due"] for c in running), default=None),
            "next_escalation_at": min((c["due_at"] for c in running if c["due_at"] is not None), default=None)}
