"""KPI definitions and the incremental counters behind them (pure).

A request contributes counters to one day bucket (the local day it was *received*, so a period's
KPIs are about the requests received in that period) under several dimensions: the whole district
(``all``), its district / street / community / grid, the staff member responsible (who accepted it,
else its current assignee), its property company, its service, and each department it was
dispatched to. ``contributions(state)`` is a pure function of the folded state; the projection
stores the last contribution in the request document and applies only the *difference* when the
state changes, so counters always equal the sum over requests of their current contribution.

Definitions (also in the README section and the API docs):

- **response rate** = requests accepted within the response limit / requests whose response is due
  or done (accepted, or escalated on the response clock), merged duplicates and rejected excluded;
- **resolution rate** = resolved (or closed after resolution) / received, excluding merged
  duplicates and rejected (out-of-scope) requests;
- **satisfaction rate** = (satisfied + basically satisfied) / rated;
- **on-time response / resolution rates** = within the limit / responded / resolved;
- **report-back on-time rate** (departments) = reported by the deadline / dispatched;
- **median / p90 handling time** (calendar hours, received -> resolved) and response time
  (received -> accepted), estimated from fixed log-scale histogram buckets (sqrt 2 steps from
  15 minutes): the upper edge of the bucket where the cumulative count reaches the quantile;
- **reopen rate** = requests reopened at least once / resolved;
- **overdue** = requests that missed at least one limit (escalated at least once).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

from civicgrid_audit.domain.timeline import parse_time
from civicgrid_contracts.calendar import WorkingCalendar

DIMENSIONS = ("all", "district", "street", "community", "grid", "staff", "property", "service", "department")
AREA_DIMENSIONS = ("district", "street", "community", "grid")
HIST_BUCKETS = 32
HIST_BASE_HOURS = 0.25


def bucket_of(hours: float) -> int:
    if hours <= HIST_BASE_HOURS:
        return 0
    return min(HIST_BUCKETS - 1, math.ceil(2 * math.log2(hours / HIST_BASE_HOURS)))


def bucket_upper(i: int) -> float:
    return HIST_BASE_HOURS * 2 ** (i / 2)


def safe(key: str) -> str:
    return str(key).replace(".", "_").replace("$", "_").replace("|", "_")


def counter_id(dim: str, key: str, day: str) -> str:
    return f"{dim}|{safe(key)}|{day}"


def split_counter_id(cid: str) -> tuple[str, str, str]:
    dim, key, day = cid.split("|")
    return dim, key, day


def contributions(state: dict[str, Any], calendar: WorkingCalendar) -> dict[str, dict[str, int]]:
    """counter id -> {metric: count} that this request contributes right now."""
    if not state.get("received_at"):
        return {}
    received = parse_time(state["received_at"])
    day = calendar.local_date(received).isoformat()
    m: dict[str, int] = {"received": 1}
    excluded = state["status"] in ("merged", "rejected")
    if excluded:
        m["excluded"] = 1
    else:
        m["counted"] = 1
        esc_clocks = {e["clock"] for e in state["escalations"]}
        if state["accepted_at"]:
            acc = parse_time(state["accepted_at"])
            m["responded"] = 1
            m["response_due"] = 1
            if acc <= parse_time(state["response_due"]):
                m["responded_on_time"] = 1
            m[f"hresp_{bucket_of((acc - received).total_seconds() / 3600)}"] = 1
        elif "response" in esc_clocks:
            m["response_due"] = 1
        if state["resolved_at"]:
            res = parse_time(state["resolved_at"])
            m["resolved"] = 1
            if res <= parse_time(state["resolution_due"]):
                m["resolved_on_time"] = 1
            m[f"hres_{bucket_of((res - received).total_seconds() / 3600)}"] = 1
        if state["rating"]:
            m["rated"] = 1
            m[f"rating_{state['rating']}"] = 1
        if state["reopen_count"]:
            m["reopened"] = 1
        if state["escalations"]:
            m["overdue"] = 1
            m["escalations"] = len(state["escalations"])
    keys: list[tuple[str, str]] = [("all", "*")]
    area = state.get("area") or {}
    keys += [(d, area[d]) for d in AREA_DIMENSIONS if area.get(d)]
    staff = state.get("accepted_by") or state.get("assignee")
    if staff:
        keys.append(("staff", staff))
    if state.get("property_company"):
        keys.append(("property", state["property_company"]))
    if state.get("service_code"):
        keys.append(("service", state["service_code"]))
    out: dict[str, dict[str, int]] = {}
    for d, k in keys:  # one day bucket each (a period is read as its days: ADR 0600)
        out[counter_id(d, k, day)] = dict(m)
    # departments: the request's figures plus their own report-back figures
    dept_extra: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    if not excluded:
        for disp in state["dispatches"].values():
            due = parse_time(disp["report_by"])
            for dept in disp["departments"]:
                x = dept_extra[dept]
                x["dispatched"] += 1
                rep = disp["reported"].get(dept)
                if rep:
                    x["reported"] += 1
                    if parse_time(rep) <= due:
                        x["reported_on_time"] += 1
    for dept, extra in dept_extra.items():
        out[counter_id("department", dept, day)] = {**m, **extra}
    return out


def grouped(contribution: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """A contribution as a request document keeps it: the counters that get the same metrics named
    together, with those metrics once (a request adds the same figures to its district, street,
    community, grid, staff member and service; a department, its own besides). Plain and a few times
    smaller than a subdocument per counter, which every read of the document decodes (ADR 0604)."""
    groups: dict[tuple[tuple[str, int], ...], dict[str, Any]] = {}
    for cid in sorted(contribution):
        m = contribution[cid]
        groups.setdefault(tuple(sorted(m.items())), {"metrics": dict(m), "counters": []})["counters"].append(cid)
    return list(groups.values())


def expanded(groups: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """The contribution ``grouped`` keeps: counter id -> metrics."""
    return {cid: dict(g["metrics"]) for g in groups for cid in g["counters"]}


def is_month_bucket(cid: str) -> bool:
    """Counters had a month bucket (``grid|g1|2026-11``) beside each day bucket until ADR 0600's
    revision; they are read no more."""
    return len(cid.rsplit("|", 1)[-1]) == 7


def diff(new: dict[str, dict[str, int]], old: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """``new`` minus ``old``, per counter; counters and counts that do not change are left out.
    Holds on to ``new``'s inner dicts where they are the delta (read-only to callers): a rebuild
    computes this for every request, and copying them was a tenth of the replay's time."""
    out: dict[str, dict[str, int]] = {}
    for cid, a in new.items():
        b = old.get(cid)
        if not b:
            if any(a.values()):
                out[cid] = a if all(a.values()) else {k: v for k, v in a.items() if v}
            continue
        if a == b:
            continue
        delta = {k: a.get(k, 0) - b.get(k, 0) for k in a.keys() | b.keys()}
        delta = {k: v for k, v in delta.items() if v}
        if delta:
            out[cid] = delta
    for cid, b in old.items():
        if cid not in new:
            gone = {k: -v for k, v in b.items() if v}
            if gone:
                out[cid] = gone
    return out


def add_into(total: dict[str, int], m: dict[str, int]) -> None:
    for k, v in m.items():
        total[k] = total.get(k, 0) + v


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def quantile(m: dict[str, int], prefix: str, q: float) -> float | None:
    counts = [m.get(f"{prefix}_{i}", 0) for i in range(HIST_BUCKETS)]
    n = sum(counts)
    if not n:
        return None
    target = q * n
    cum = 0
    for i, c in enumerate(counts):
        cum += c
        if cum >= target:
            return round(bucket_upper(i), 3)
    return round(bucket_upper(HIST_BUCKETS - 1), 3)


def figures(m: dict[str, int]) -> dict[str, Any]:
    """The KPI figures from summed counters."""
    satisfied = m.get("rating_satisfied", 0) + m.get("rating_basically_satisfied", 0)
    return {
        "received": m.get("received", 0), "counted": m.get("counted", 0), "excluded": m.get("excluded", 0),
        "responded": m.get("responded", 0), "resolved": m.get("resolved", 0), "rated": m.get("rated", 0),
        "satisfied": m.get("rating_satisfied", 0), "basically_satisfied": m.get("rating_basically_satisfied", 0),
        "unsatisfied": m.get("rating_unsatisfied", 0),
        "response_rate": _rate(m.get("responded_on_time", 0), m.get("response_due", 0)),
        "resolution_rate": _rate(m.get("resolved", 0), m.get("counted", 0)),
        "satisfaction_rate": _rate(satisfied, m.get("rated", 0)),
        "response_on_time_rate": _rate(m.get("responded_on_time", 0), m.get("responded", 0)),
        "resolution_on_time_rate": _rate(m.get("resolved_on_time", 0), m.get("resolved", 0)),
        "reopen_rate": _rate(m.get("reopened", 0), m.get("resolved", 0)),
        "overdue": m.get("overdue", 0), "escalations": m.get("escalations", 0),
        "dispatched": m.get("dispatched", 0), "reported": m.get("reported", 0),
        "report_back_on_time_rate": _rate(m.get("reported_on_time", 0), m.get("dispatched", 0)),
        "median_handling_hours": quantile(m, "hres", 0.5), "p90_handling_hours": quantile(m, "hres", 0.9),
        "median_response_hours": quantile(m, "hresp", 0.5), "p90_response_hours": quantile(m, "hresp", 0.9),
    }


def score(f: dict[str, Any]) -> float:
    """Evaluation score: mean of the three headline rates that are defined (0..100)."""
    rates = [f[k] for k in ("response_rate", "resolution_rate", "satisfaction_rate") if f.get(k) is not None]
    if f.get("report_back_on_time_rate") is not None:
        rates.append(f["report_back_on_time_rate"])
    return round(100 * sum(rates) / len(rates), 2) if rates else 0.0


def buckets_for(start: str, end: str) -> list[str]:
    """The day buckets (``2026-12-03``) of the inclusive local-day range."""
    from datetime import date, timedelta

    a, b = date.fromisoformat(start), date.fromisoformat(end)
    return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def quarter_range(quarter: str) -> tuple[str, str]:
    """'2026Q4' -> ('2026-10-01', '2026-12-31') inclusive local days."""
    year, q = quarter.upper().split("Q")
    y, qn = int(year), int(q)
    if qn not in (1, 2, 3, 4):
        raise ValueError(f"bad quarter {quarter!r}")
    start = datetime(y, 3 * (qn - 1) + 1, 1).date()
    end_month = 3 * qn
    end = (datetime(y + (end_month == 12), end_month % 12 + 1, 1).date()).fromordinal(
        datetime(y + (end_month == 12), end_month % 12 + 1, 1).date().toordinal() - 1)
    return start.isoformat(), end.isoformat()
