"""Events of the volunteer stream owned by matching (topic ``matching.volunteers.v1``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from civicgrid_contracts.envelope import EventPayload, register


@register
class VolunteerOffered(EventPayload):
    event_type = "civicgrid.volunteer.offered"

    offer_id: str
    volunteer_id: str
    rank: int = Field(ge=1)
    score: float
    distance_m: float
    expires_at: datetime
    offered_at: datetime


@register
class VolunteerAccepted(EventPayload):
    """First accept wins; the other open offers are withdrawn."""

    event_type = "civicgrid.volunteer.accepted"

    offer_id: str
    volunteer_id: str
    accepted_at: datetime


@register
class VolunteerDeclined(EventPayload):
    event_type = "civicgrid.volunteer.declined"

    offer_id: str
    volunteer_id: str
    reason: str | None = None
    declined_at: datetime


@register
class OfferExpired(EventPayload):
    event_type = "civicgrid.volunteer.offer_expired"

    offer_id: str
    volunteer_id: str
    expired_at: datetime


@register
class OfferWithdrawn(EventPayload):
    event_type = "civicgrid.volunteer.offer_withdrawn"

    offer_id: str
    volunteer_id: str
    reason: str
    withdrawn_at: datetime


@register
class VolunteerUnmatched(EventPayload):
    """Nobody eligible could be found (or everyone declined); staff and supervision must see it."""

    event_type = "civicgrid.volunteer.unmatched"

    reason: str
    candidates_considered: int
    unmatched_at: datetime


@register
class ServiceDelivered(EventPayload):
    """A volunteer delivered the service; hours as checked in and out (approval may correct them)."""

    event_type = "civicgrid.volunteer.service_delivered"

    volunteer_id: str
    hours: float = Field(ge=0, le=24)
    started_at: datetime
    ended_at: datetime
    note: str | None = Field(default=None, max_length=2000)
