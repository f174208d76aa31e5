"""A request's assignment and handling: the aggregate that enforces which state allows which
action and records the events each action causes. No I/O: load reservations are decided by the
assigner (they need the store's atomic counters) and handed in; load to give back is recorded in
``releases`` for the handler to apply after the save."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from civicgrid_contracts.envelope import EventPayload
from civicgrid_contracts.events.grid import (
    DepartmentAcknowledged,
    DepartmentDispatched,
    DepartmentReported,
    RequestAccepted,
    RequestAssigned,
    RequestNoted,
    RequestReassigned,
    RequestRejected,
    RequestResolved,
    RequestTransferred,
    VolunteerRequested,
)
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_contracts.values import AreaPath, Location
from civicgrid_grid.domain.errors import NotAllowed, NotFound

#: statuses in which staff still work on a request (and it counts toward someone's load)
OPEN = ("assigned", "accepted", "in_progress", "reopened")
ACCEPTABLE = ("assigned", "reopened")


@dataclass
class Dispatch:
    """Departments whistled for one request; a joint case (several departments) is done only when
    every one of them reported."""

    departments: list[str]
    report_by: datetime
    acknowledged: dict[str, datetime] = field(default_factory=dict)
    reported: dict[str, dict[str, Any]] = field(default_factory=dict)
    open: bool = True
    by: str | None = None

    def acknowledge(self, department: str, at: datetime) -> bool:
        """False when already acknowledged (acknowledging twice changes nothing)."""
        if department in self.acknowledged:
            return False
        self.acknowledged[department] = at
        return True

    def report(self, dispatch_id: str, department: str, outcome: str, at: datetime) -> bool:
        """Record the report; True when it was the last one the dispatch waited for."""
        if department in self.reported:
            raise NotAllowed(f"{department} already reported on dispatch {dispatch_id}.")
        self.reported[department] = {"outcome": outcome, "at": at}
        self.open = any(d not in self.reported for d in self.departments)
        return not self.open


@dataclass
class Holder:
    """Who holds a request and why (the outcome of assignment, transfer, escalation)."""

    assignee_id: str
    holder: str
    level: str
    reason: str
    load_holder: str | None = None
    post_id: str | None = None
    area: dict[str, Any] | None = None
    located_by: str | None = None
    map_version: int | None = None


@dataclass
class RequestState:
    """What grid knows of one request. Field names are the stored document's (see README)."""

    id: str
    status: str
    correlation_id: str | None = None
    version: int = 0
    # what intake received (the parts grid uses)
    service_code: str = "unknown"
    service_group: str | None = None
    handled_by: list[str] = field(default_factory=list)
    departments: list[str] = field(default_factory=list)
    needs_volunteer: bool = False
    priority: str = "normal"
    location: dict[str, Any] = field(default_factory=dict)
    reporter_id: str | None = None
    preferred_time: datetime | None = None
    time_limits: dict[str, Any] = field(default_factory=dict)
    received_at: datetime | None = None
    due_response: datetime | None = None
    due_resolution: datetime | None = None
    duplicate_of: str | None = None
    # who holds it
    area: dict[str, Any] = field(default_factory=dict)
    located_by: str | None = None
    assignee_id: str | None = None
    holder: str | None = None
    level: str | None = None
    reason: str | None = None
    post_id: str | None = None
    load_holder: str | None = None
    map_version: int | None = None
    assigned_at: datetime | None = None
    # what happened since
    accepted_by: str | None = None
    resolved_by: str | None = None
    rejected_reason: str | None = None
    reopened_reason: str | None = None
    status_detail: str | None = None
    volunteer_requested: bool = False
    volunteer_id: str | None = None
    service_delivered: bool = False
    dispatches: dict[str, Dispatch] = field(default_factory=dict)
    dispatched_to: list[str] = field(default_factory=list)
    attention: list[str] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    escalations: list[str] = field(default_factory=list)
    #: ids of the events already applied (a redelivered event changes nothing)
    applied: list[str] = field(default_factory=list)
    # not stored: what the last actions caused
    events: list[EventPayload] = field(default_factory=list, repr=False)
    releases: list[str] = field(default_factory=list, repr=False)


@dataclass
class RequestCase(RequestState):
    """One request's handling: the rules of each action and the events it causes."""

    # ------------------------------------------------------------------ rules
    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def calendar(self) -> str:
        return self.time_limits.get("calendar") or "business"

    def _require(self, allowed: tuple[str, ...], what: str) -> None:
        if self.status not in allowed:
            raise NotAllowed(f"Cannot {what}: the request is {self.status!r} (needs {', '.join(allowed)}).")

    def dispatch(self, dispatch_id: str, department: str) -> Dispatch:
        d = self.dispatches.get(dispatch_id)
        if d is None or department not in d.departments:
            raise NotFound(f"No dispatch {dispatch_id} to {department} on this request.")
        return d

    def open_dispatches(self) -> list[str]:
        return [k for k, d in self.dispatches.items() if d.open]

    def _release_load(self) -> None:
        if self.load_holder:
            self.releases.append(self.load_holder)

    # ------------------------------------------------------------------ staff actions
    def accept(self, staff_id: str, at: datetime) -> None:
        self._require(ACCEPTABLE, "accept")
        self.status, self.accepted_by = "accepted", staff_id
        self.events.append(RequestAccepted(request_id=self.id, staff_id=staff_id, accepted_at=at))

    def note(self, staff_id: str, note: str, at: datetime) -> None:
        self._require(OPEN, "add a note")
        self.notes.append({"staff_id": staff_id, "note": note, "at": at})
        self.events.append(RequestNoted(request_id=self.id, staff_id=staff_id, note=note, noted_at=at))

    def ask_volunteers(self, staff_id: str, needed_from: datetime, hours: float, recurring: bool,
                       at: datetime) -> None:
        self._require(OPEN, "ask for volunteers")
        self.volunteer_requested = True
        self.events.append(VolunteerRequested(
            request_id=self.id, service_code=self.service_code, location=Location.model_validate(self.location),
            community=self.area.get("community"), needed_from=needed_from, needed_hours=hours,
            recurring_weekly=recurring, resident_ref=self.reporter_id, requested_by=staff_id, requested_at=at))

    def whistle(self, dispatch_id: str, departments: list[str], reason: str, report_by: datetime, at: datetime,
                *, by: str | None = None) -> None:
        """Dispatch departments (a staff member's whistle, or the service's own need on assignment)."""
        self._require(OPEN, "dispatch to departments")
        self.dispatches[dispatch_id] = Dispatch(list(departments), report_by, by=by)
        self.dispatched_to += [d for d in departments if d not in self.dispatched_to]
        if by is not None:
            self.status = "in_progress"
        else:
            self.status_detail = "department dispatched"
        self.events.append(DepartmentDispatched(request_id=self.id, dispatch_id=dispatch_id,
                                                departments=tuple(departments), joint=len(departments) > 1,
                                                report_by=report_by, reason=reason, dispatched_at=at))

    def acknowledge(self, dispatch_id: str, department: str, at: datetime) -> None:
        if self.dispatch(dispatch_id, department).acknowledge(department, at):
            self.events.append(DepartmentAcknowledged(request_id=self.id, dispatch_id=dispatch_id,
                                                      department=department, acknowledged_at=at))

    def report(self, dispatch_id: str, department: str, outcome: str, at: datetime) -> None:
        last = self.dispatch(dispatch_id, department).report(dispatch_id, department, outcome, at)
        self.events.append(DepartmentReported(request_id=self.id, dispatch_id=dispatch_id, department=department,
                                              outcome=outcome, reported_at=at, all_reported=last))

    def resolve(self, staff_id: str, note: str, at: datetime) -> None:
        waiting = self.open_dispatches()
        if waiting:  # the joint-case rule
            raise NotAllowed(f"Joint case still open: dispatch {', '.join(waiting)} awaits reports.")
        self._require(OPEN, "resolve")
        self.status, self.resolved_by = "resolved", staff_id
        self.events.append(RequestResolved(request_id=self.id, staff_id=staff_id, resolution_note=note,
                                           resolved_at=at))
        self._release_load()

    def reject(self, staff_id: str, reason: str, at: datetime) -> None:
        self._require(OPEN, "reject")
        self.status, self.rejected_reason = "rejected", reason
        self.events.append(RequestRejected(request_id=self.id, staff_id=staff_id, reason=reason, rejected_at=at))
        self._release_load()

    def transfer(self, staff_id: str, to_grid: str, reason: str, new: Holder, at: datetime, *,
                 property_company: str | None = None) -> None:
        """To another grid; ``new``: the holder assignment found there (its load already reserved)."""
        self._require(OPEN, "transfer")
        from_grid = self.area.get("grid")
        new.reason = f"transferred from {from_grid}: {reason}; {new.reason}"
        self.transfers.append({"id": f"{self.id}:{len(self.transfers) + 1}", "from": from_grid, "to": to_grid,
                               "reason": reason, "by": staff_id, "at": at})
        self.events.append(RequestTransferred(request_id=self.id, from_grid=from_grid, to_grid=to_grid,
                                              reason=reason, staff_id=staff_id, transferred_at=at))
        self.assign(new, at, property_company=property_company)

    def reassign(self, supervisor: str, new: Holder, at: datetime) -> None:
        self._require(OPEN, "reassign")
        self._take_over(new, at, escalation_id=None)
        if self.status == "reopened":
            self.status = "assigned"

    # ------------------------------------------------------------------ assignment, events from other services
    def assign(self, new: Holder, at: datetime, *, property_company: str | None = None) -> None:
        self.hand_to(new, at)
        self.status = "assigned"
        self.events.append(RequestAssigned(
            request_id=self.id, area=AreaPath.model_validate(self.area), post_id=self.post_id,
            assignee_id=new.assignee_id, holder=new.holder, level=new.level, reason=new.reason,
            map_version=new.map_version, assigned_at=at, property_company=property_company))

    def hand_to(self, new: Holder, at: datetime) -> None:
        """Record who holds it now (assignment or transfer: a RequestAssigned follows from the caller)."""
        old = self.load_holder
        for name in ("assignee_id", "holder", "level", "reason", "load_holder", "post_id", "located_by",
                     "map_version"):
            setattr(self, name, getattr(new, name))
        if new.area is not None:
            self.area = new.area
        self.assigned_at = at
        if old and old != new.load_holder:
            self.releases.append(old)

    def _take_over(self, new: Holder, at: datetime, *, escalation_id: str | None) -> None:
        old_assignee, old_load = self.assignee_id, self.load_holder
        self.assignee_id, self.holder, self.level, self.reason = new.assignee_id, new.holder, new.level, new.reason
        self.load_holder = new.load_holder
        self.events.append(RequestReassigned(request_id=self.id, from_assignee=old_assignee,
                                             to_assignee=new.assignee_id, level=new.level, reason=new.reason,
                                             escalation_id=escalation_id, reassigned_at=at))
        if old_load and old_load != new.load_holder:
            self.releases.append(old_load)

    def escalate(self, escalation_id: str, new: Holder | None, at: datetime) -> None:
        """Audit escalated it: up the chain while open; a closed request only records the escalation."""
        self.escalations.append(escalation_id)
        if new is not None and self.is_open:
            self._take_over(new, at, escalation_id=escalation_id)

    def merged(self) -> None:
        if self.status in ("merged", "new"):
            self.status = "merged"

    def unmerged(self) -> bool:
        """True when the request now needs an assignment of its own."""
        if self.status != "merged":
            self.duplicate_of = None
            return False
        self.duplicate_of = None
        return True

    def reopen(self, reason: str, holder_load: str | None) -> None:
        self.status, self.reopened_reason, self.load_holder = "reopened", reason, holder_load

    def finish(self, status: str) -> None:
        self.status = status
        self._release_load()

    def volunteer_unmatched(self, reason: str) -> None:
        self.attention.append(f"volunteer unmatched: {reason}")

    def volunteer_accepted(self, volunteer_id: str) -> None:
        if self.status in ("assigned", "accepted"):
            self.status, self.volunteer_id = "in_progress", volunteer_id

    def delivered(self, volunteer_id: str, hours: float, note: str | None, at: datetime) -> None:
        """A volunteer delivered: a volunteer-only service is resolved by it."""
        self.service_delivered = True
        if set(self.handled_by) != {"volunteer"} or not self.is_open:
            return
        self.status, self.resolved_by = "resolved", "system"
        self.events.append(RequestResolved(
            request_id=self.id, staff_id="system",
            resolution_note=f"volunteer {volunteer_id} delivered {hours:g} h" + (f": {note}" if note else ""),
            resolved_at=at))
        self._release_load()


def received_fields(ev: RequestReceived, correlation_id: str | None) -> dict[str, Any]:
    """The named fields a request document keeps of its ``RequestReceived``."""
    return {"correlation_id": correlation_id, "service_code": ev.service_code, "service_group": ev.service_group,
            "handled_by": list(ev.handled_by), "departments": list(ev.departments),
            "needs_volunteer": ev.needs_volunteer, "priority": ev.priority,
            "location": ev.location.model_dump(), "reporter_id": ev.reporter_id, "preferred_time": ev.preferred_time,
            "time_limits": ev.time_limits.model_dump(), "received_at": ev.received_at,
            # the deadlines intake set when the request was received: the same instants everywhere
            "due_response": ev.response_due, "due_resolution": ev.resolution_due, "duplicate_of": ev.duplicate_of}
