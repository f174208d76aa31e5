"""Events of the assignment stream owned by grid (topic ``grid.assignments.v1``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from civicgrid_contracts.envelope import EventPayload, register
from civicgrid_contracts.values import AreaPath, ChainLevel, Location

HolderKind = Literal["A", "B", "chain", "unlocated", "supervisor"]


@register
class RequestAssigned(EventPayload):
    """The request reached a grid and a person responsible for it (A, B, or up the chain)."""

    event_type = "civicgrid.request.assigned"

    area: AreaPath
    post_id: str | None = None
    assignee_id: str = Field(description="Staff id of the holder")
    holder: HolderKind
    level: ChainLevel = "grid"
    reason: str = Field(description="Why this holder, e.g. 'B: A on leave until 2026-12-03'")
    map_version: int
    assigned_at: datetime
    property_company: str | None = None


@register
class RequestAccepted(EventPayload):
    """The holder accepted the request: this is the *response*."""

    event_type = "civicgrid.request.accepted"

    staff_id: str
    accepted_at: datetime


@register
class RequestNoted(EventPayload):
    event_type = "civicgrid.request.noted"

    staff_id: str
    note: str = Field(max_length=2000)
    noted_at: datetime


@register
class VolunteerRequested(EventPayload):
    """A volunteer is needed for this request (by its service, or staff asked)."""

    event_type = "civicgrid.request.volunteer_requested"

    service_code: str
    location: Location
    community: str | None = None
    needed_from: datetime
    needed_hours: float = Field(gt=0, le=24)
    recurring_weekly: bool = False
    resident_ref: str | None = Field(default=None, description="Pseudonymous reporter id, for continuity")
    requested_by: str = Field(description="Staff id, or 'system' when the service itself needs one")
    requested_at: datetime


@register
class DepartmentDispatched(EventPayload):
    """The street 'blew the whistle': departments must report back by the deadline."""

    event_type = "civicgrid.request.department_dispatched"

    dispatch_id: str
    departments: tuple[str, ...] = Field(min_length=1)
    joint: bool
    report_by: datetime
    reason: str
    dispatched_at: datetime


@register
class DepartmentAcknowledged(EventPayload):
    event_type = "civicgrid.request.department_acknowledged"

    dispatch_id: str
    department: str
    acknowledged_at: datetime


@register
class DepartmentReported(EventPayload):
    event_type = "civicgrid.request.department_reported"

    dispatch_id: str
    department: str
    outcome: str = Field(max_length=2000)
    reported_at: datetime
    all_reported: bool = Field(description="True when this was the last department of the dispatch")


@register
class RequestResolved(EventPayload):
    event_type = "civicgrid.request.resolved"

    staff_id: str
    resolution_note: str = Field(max_length=2000)
    resolved_at: datetime


@register
class RequestTransferred(EventPayload):
    """Moved to another grid (wrong location); an assignment in the new grid follows."""

    event_type = "civicgrid.request.transferred"

    from_grid: str | None
    to_grid: str
    reason: str
    staff_id: str
    transferred_at: datetime


@register
class RequestReassigned(EventPayload):
    """A supervisor reassigned it, or an escalation moved it one level up the chain."""

    event_type = "civicgrid.request.reassigned"

    from_assignee: str | None
    to_assignee: str
    level: ChainLevel
    reason: str
    escalation_id: str | None = None
    reassigned_at: datetime


@register
class RequestRejected(EventPayload):
    """Out of scope; a reason is required."""

    event_type = "civicgrid.request.rejected"

    staff_id: str
    reason: str = Field(min_length=1)
    rejected_at: datetime
