"""Rules of what the pages show: a queue in deadline order with the time left, the catalogue grouped
and searched, grids coloured by their overdue and open requests."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from civicgrid_console.domain.i18n import as_datetime, simplified

#: requests a resident may still rate, and the ratings intake takes
RATEABLE = ("resolved",)
RATINGS = ("satisfied", "basically_satisfied", "unsatisfied")
#: statuses in which a worker may still act on a request
ACTIVE = ("assigned", "accepted", "in_progress", "dispatched", "escalated", "reopened", "transferred")


@dataclass(frozen=True)
class QueueRow:
    request_id: str
    status: str
    service_code: str | None
    grid: str | None
    holder: str | None
    deadline: datetime | None
    deadline_kind: str  # "response" until accepted, then "resolution"
    seconds_left: float | None
    attention: tuple[str, ...]

    @property
    def overdue(self) -> bool:
        return self.seconds_left is not None and self.seconds_left < 0


def next_deadline(item: dict[str, Any]) -> tuple[datetime | None, str]:
    """The deadline that matters now: the response limit until someone accepted, then resolution."""
    if item.get("status") in ("assigned", "reopened", "transferred", "escalated") and item.get("due_response"):
        return as_datetime(item["due_response"]), "response"
    return as_datetime(item.get("due_resolution") or item.get("due_response")), "resolution"


def queue_rows(items: list[dict[str, Any]], now: datetime) -> list[QueueRow]:
    """The queue in deadline order (soonest, i.e. most late, first; no deadline last)."""
    rows = []
    for it in items:
        deadline, kind = next_deadline(it)
        rows.append(QueueRow(request_id=it["request_id"], status=it.get("status", ""),
                             service_code=it.get("service_code"), grid=it.get("grid"), holder=it.get("holder"),
                             deadline=deadline, deadline_kind=kind,
                             seconds_left=(deadline - now).total_seconds() if deadline else None,
                             attention=tuple(it.get("attention") or ())))
    return sorted(rows, key=lambda r: (r.deadline is None, r.deadline or now, r.request_id))


def group_catalogue(services: list[dict[str, Any]], query: str = "") -> dict[str, list[dict[str, Any]]]:
    """Active services by group, filtered by a search over both names, the code and the keywords."""
    q = simplified(query.strip().lower())
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in services:
        if not s.get("active", True):
            continue
        haystack = simplified(" ".join([s.get("code", ""), s.get("name_zh", ""), s.get("name_en", ""),
                                        s.get("group", ""), *s.get("keywords", [])]).lower())
        if q and q not in haystack:
            continue
        groups[s.get("group") or "other"].append(s)
    for items in groups.values():
        items.sort(key=lambda s: s.get("name_en", ""))
    return dict(sorted(groups.items()))


def grid_colours(grids: list[str] | set[str], overdue: list[dict[str, Any]], open_counts: dict[str, int]) -> dict[str, dict]:
    """Each grid's overdue and open counts and its colour class: overdue beats open beats clear."""
    late: dict[str, int] = defaultdict(int)
    for o in overdue:
        code = o.get("area_code") or ""
        grid = code[:15]  # a request's area code is its grid's (15 digits) once located
        if grid in open_counts or grid in grids:
            late[grid] += 1
    out = {}
    for g in grids:
        n_late, n_open = late.get(g, 0), open_counts.get(g, 0)
        out[g] = {"overdue": n_late, "open": n_open,
                  "state": "overdue" if n_late else "open" if n_open else "clear"}
    return out
