"""Events of the request stream owned by intake (topic ``intake.requests.v1``).

No field can carry a resident's name, phone or e-mail: reporters appear as ``reporter_id``, a
keyed hash that recognises a repeated reporter without revealing who they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from civicgrid_contracts.calendar import DEFAULT_CALENDAR, WorkingCalendar, due_at
from civicgrid_contracts.envelope import EventPayload, register, upcaster
from civicgrid_contracts.values import Channel, Handler, Location, Priority, Rating, TimeLimits, Value


class ImportedFrom(Value):
    """Where an imported case comes from: an open case of the hotline system a city replaces, taken
    over by an administrator with its original received time."""

    system: str = Field(max_length=64, description="The legacy system, as the import named it")
    reference: str = Field(max_length=100, description="The case's reference in that system")
    batch_id: str = Field(description="The import that brought it (its admin change in the staff access trail)")
    imported_by: str = Field(description="The administrator who imported it (staff id)")
    imported_at: datetime = Field(description="When it was imported (its received_at is the original time)")


@register
class RequestReceived(EventPayload):
    """A resident's request entered the demand list. Its response and resolution deadlines are set
    here, once, by intake (on the working calendar it held at that moment); every reader uses them."""

    event_type = "civicgrid.request.received"
    schema_version = 2

    service_code: str
    service_name: str
    service_group: str | None = None
    handled_by: tuple[Handler, ...] = ("grid",)
    departments: tuple[str, ...] = Field(default=(), description="Departments to whistle when enforcement is needed")
    needs_volunteer: bool = False
    time_limits: TimeLimits
    location: Location
    description: str = Field(max_length=4000)
    attributes: dict[str, Any] = Field(default_factory=dict, description="Answers to the service's attributes")
    channel: Channel
    media_url: str | None = None
    reporter_id: str | None = Field(default=None, description="Pseudonymous reporter id (keyed hash); None if anonymous")
    preferred_time: datetime | None = None
    priority: Priority = "normal"
    received_at: datetime
    response_due: datetime = Field(description="Deadline of the response (acceptance), set when received")
    resolution_due: datetime = Field(description="Deadline of the resolution, set when received")
    duplicate_of: str | None = Field(
        default=None, description="Set when intake recognised a likely duplicate; a RequestMerged follows and the "
        "request is not assigned on its own unless staff unmerge it")
    imported_from: ImportedFrom | None = Field(
        default=None, description="Set on a case imported from the system the city replaces: received_at and the "
        "deadlines are the original ones")
    dispatched_at: datetime | None = Field(
        default=None, description="Imported cases only: when the legacy system passed the case to the service's "
        "departments; grid's dispatch (and its report-back deadline) counts from then")

    @classmethod
    def starting_clocks(cls, calendar: WorkingCalendar, **fields: Any) -> RequestReceived:
        """The event with its deadlines set on ``calendar`` from ``received_at`` and ``time_limits``."""
        limits = TimeLimits.model_validate(fields["time_limits"])
        return cls(**fields, **received_deadlines(fields["received_at"], limits, calendar))


def received_deadlines(received_at: datetime, limits: TimeLimits, calendar: WorkingCalendar) -> dict[str, datetime]:
    """The response and resolution deadlines a request received at ``received_at`` gets."""
    return {"response_due": due_at(received_at, limits.response_hours, limits.calendar, calendar),
            "resolution_due": due_at(received_at, limits.resolution_hours, limits.calendar, calendar)}


@upcaster(RequestReceived.event_type, 1)
def _received_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 carried no deadlines: they are set once here, on the shipped default calendar, so
    every reader of an old event sees the same instants."""
    start = data["received_at"]
    start = datetime.fromisoformat(start) if isinstance(start, str) else start
    due = received_deadlines(start, TimeLimits.model_validate(data["time_limits"]), DEFAULT_CALENDAR)
    return {**data, **{k: v.isoformat() for k, v in due.items()}}


@register
class RequestMerged(EventPayload):
    """The request is a likely duplicate of an open one and follows it from now on."""

    event_type = "civicgrid.request.merged"

    into_request_id: str
    distance_m: float
    followers: int = Field(description="Residents now following the earlier request, itself included")


@register
class RequestUnmerged(EventPayload):
    """Staff decided the request was not a duplicate after all; it is handled on its own."""

    event_type = "civicgrid.request.unmerged"

    from_request_id: str
    staff_id: str
    reason: str


@register
class RequestRated(EventPayload):
    """The resident rated the outcome."""

    event_type = "civicgrid.request.rated"

    rating: Rating
    comment: str | None = Field(default=None, max_length=1000)
    reporter_id: str | None = None
    rated_at: datetime


@register
class RequestReopened(EventPayload):
    """An unsatisfied rating (or staff) reopened a resolved request."""

    event_type = "civicgrid.request.reopened"

    reason: str
    reopened_at: datetime
    reopen_count: int = 1


@register
class RequestClosed(EventPayload):
    """The request is closed: rated satisfied, or not rated within the rating window."""

    event_type = "civicgrid.request.closed"

    reason: str
    closed_at: datetime
