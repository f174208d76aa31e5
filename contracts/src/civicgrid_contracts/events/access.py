"""Staff access to personal data and administrative changes (topic ``staff.access.v1``).

Published by the service where the staff member acted (intake, grid); audit keeps them in the
tamper-evident trail and lists them per staff member and per request. They say who did what, to
which object, and why -- never the personal data itself (no name, phone, e-mail or address).

``request_id`` is the object acted on and the Kafka key: the request whose contact was read, or
the administered object (``catalogue:<code>``, ``calendar:<year>``, ``map:<version>``, ``roster:<staff id>``,
``roster:<post id>``, ``requests:<import batch id>``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from civicgrid_contracts.envelope import EventPayload, register, upcaster

AdminAction = Literal[
    "catalogue.create", "catalogue.update", "catalogue.retire", "catalogue.reactivate",
    "calendar.define", "map.import", "map.activate", "roster.duty",
    "roster.post", "roster.staff_create", "roster.staff_update", "requests.import",
]


class StaffAct(EventPayload):
    staff_id: str = Field(description="Who: the signed-in staff member (token subject)")
    role: str = Field(description="The role they acted in")
    area: str = Field(default="", description="Their area scope ('' = the whole district)")
    reason: str | None = Field(default=None, max_length=200, description="Why, as the staff member gave it")


@register
class ContactRead(StaffAct):
    """A staff member read the reporter's contact details of a request (the details stay in intake)."""

    event_type = "civicgrid.access.contact_read"

    reason: str = Field(min_length=1, max_length=200, description="Why, as the staff member gave it")
    erased: bool = Field(default=False, description="The details had been erased: nothing was shown")


@register
class AdminChanged(StaffAct):
    """A staff member changed what the platform runs on: the catalogue, the calendar, the map or the roster;
    or imported open cases from the system the city replaces."""

    event_type = "civicgrid.access.admin_changed"
    #: 2: the action ``requests.import`` (open cases imported from the system a city replaces)
    schema_version = 2

    action: AdminAction
    target: str = Field(description="What was changed: a service code, a map version, a staff id, a post id")
    details: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, description="What changed, in non-personal terms (e.g. revision, duty)")


@upcaster(AdminChanged.event_type, 1)
def _admin_changed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 is version 2 with fewer actions: nothing to change."""
    return data
