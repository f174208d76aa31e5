"""Events of the service catalogue owned by intake (topic ``intake.catalogue.v1``).

``request_id`` carries the service code here (the stream's key), so that all changes to one
service keep their order.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from civicgrid_contracts.envelope import EventPayload, register
from civicgrid_contracts.values import Handler, TimeLimits


@register
class ServiceDefined(EventPayload):
    """A service of the catalogue was created or changed (the whole definition, last one wins)."""

    event_type = "civicgrid.catalogue.service_defined"

    service_code: str
    name_zh: str
    name_en: str
    group: str
    handled_by: tuple[Handler, ...]
    departments: tuple[str, ...] = ()
    needs_volunteer: bool = False
    required_qualifications: tuple[str, ...] = ()
    visit_hours: float | None = Field(default=None, description="Typical length of a volunteer visit")
    time_limits: TimeLimits
    active: bool = True
    revision: int = Field(ge=1, description="Monotonic per service; readers keep the highest")
    changed_at: datetime
