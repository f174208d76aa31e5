"""A request's status as a fold over lifecycle events (pure).

``apply(state, envelope)`` returns the new ``StatusState`` and the history entry the event adds,
or ``None`` when the event changes nothing a resident sees. Statuses never move backwards except
through an explicit reopen; a late, older event only adds to the history.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from civicgrid_contracts import Envelope
from civicgrid_contracts.events import audit, grid, intake, matching

Status = Literal["received", "merged", "assigned", "accepted", "in_progress", "resolved", "closed", "rejected",
                 "reopened"]
STATUSES: tuple[str, ...] = ("received", "merged", "assigned", "accepted", "in_progress", "resolved", "closed",
                             "rejected", "reopened")
OPEN_STATUSES = frozenset({"received", "merged", "assigned", "accepted", "in_progress", "reopened"})
#: Open311 has two states; a resolved request is closed from the reporter's point of view.
OPEN311_CLOSED = frozenset({"resolved", "closed", "rejected"})
#: How far along the lifecycle a status is; events never move a request to a lower rank, except reopen.
RANK = {"received": 0, "merged": 0, "reopened": 1, "assigned": 1, "accepted": 2, "in_progress": 3, "resolved": 4,
        "rejected": 4, "closed": 5}


@dataclass(frozen=True)
class StatusState:
    status: str
    status_notes: str | None = None
    agency_responsible: str | None = None
    assignee_id: str | None = None
    area_code: str | None = None
    area_keys: tuple[str, ...] = ()
    expected_at: datetime | None = None


def open311_status(status: str) -> str:
    return "closed" if status in OPEN311_CLOSED else "open"


def _advance(state: StatusState, to: str) -> str:
    cur = state.status
    if cur in ("closed", "rejected"):
        return cur
    if cur == "resolved" and to != "reopened":
        return cur
    if to == "reopened" or RANK[to] >= RANK.get(cur, 0) or cur == "reopened":
        return to
    return cur


def _area(a: Any) -> tuple[str | None, tuple[str, ...]]:
    keys = tuple(k for k in (a.district, a.street, a.community, a.grid, a.building) if k)
    deepest = a.grid or a.community or a.street or a.district
    return deepest, keys


def apply(state: StatusState, env: Envelope) -> tuple[StatusState, dict[str, Any]] | None:
    """Fold one lifecycle event into the status; returns (new state, history entry) or None."""
    p = env.data
    note: str | None = None
    to: str | None = None
    s = state
    if isinstance(p, grid.RequestAssigned):
        to = "assigned"
        area_code, keys = _area(p.area)
        s = replace(s, agency_responsible=p.area.grid or area_code, assignee_id=p.assignee_id, area_code=area_code,
                    area_keys=keys)
        note = f"Assigned to {'the ' + p.level + ' level' if p.holder == 'chain' else 'post ' + (p.post_id or '-')}" \
               f" ({p.holder})"
        if p.property_company:
            s = replace(s, agency_responsible=f"{s.agency_responsible} / {p.property_company}")
    elif isinstance(p, grid.RequestAccepted):
        to, note = "accepted", "Accepted by the responsible staff"
    elif isinstance(p, grid.RequestNoted):
        note = p.note
    elif isinstance(p, grid.VolunteerRequested):
        to, note = "in_progress", "A volunteer is being arranged"
    elif isinstance(p, grid.DepartmentDispatched):
        to, note = "in_progress", f"Dispatched to {', '.join(p.departments)}"
        s = replace(s, agency_responsible=", ".join(p.departments))
    elif isinstance(p, grid.DepartmentAcknowledged):
        to, note = "in_progress", f"{p.department} acknowledged"
    elif isinstance(p, grid.DepartmentReported):
        to, note = "in_progress", f"{p.department} reported: {p.outcome}"
    elif isinstance(p, grid.RequestResolved):
        to, note = "resolved", p.resolution_note
    elif isinstance(p, grid.RequestTransferred):
        to, note = "assigned", f"Transferred to grid {p.to_grid}: {p.reason}"
        s = replace(s, agency_responsible=p.to_grid)
    elif isinstance(p, grid.RequestReassigned):
        note = f"Reassigned ({p.level} level): {p.reason}"
        s = replace(s, assignee_id=p.to_assignee)
    elif isinstance(p, grid.RequestRejected):
        to, note = "rejected", p.reason
    elif isinstance(p, matching.VolunteerAccepted):
        to, note = "in_progress", "A volunteer accepted"
    elif isinstance(p, matching.ServiceDelivered):
        to, note = "in_progress", "The volunteer service was delivered"
    elif isinstance(p, matching.VolunteerUnmatched):
        note = "No volunteer available yet; staff will follow up"
    elif isinstance(p, audit.RequestEscalated):
        note = f"Escalated to the {p.to_level} level ({p.clock} time limit passed)"
    elif isinstance(p, intake.RequestReopened):
        to, note = "reopened", p.reason
    elif isinstance(p, intake.RequestClosed):
        to, note = "closed", p.reason
    else:
        return None
    if to:
        s = replace(s, status=_advance(s, to))
    if note:
        s = replace(s, status_notes=note)
    entry = {"event_id": env.id, "type": env.type, "at": env.time, "status": s.status, "note": note}
    return s, entry
