"""Events of the working calendar owned by intake (topic ``intake.calendar.v1``).

``request_id`` carries the year here (the stream's key), so that all versions of one year keep their
order. The topic is never deleted: it keeps every version the street office ever set.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from civicgrid_contracts.calendar import CalendarYear
from civicgrid_contracts.envelope import EventPayload, register


@register
class CalendarYearDefined(EventPayload):
    """The working calendar of a year was set (the whole year; the highest revision wins)."""

    event_type = "civicgrid.calendar.year_defined"

    calendar: CalendarYear
    revision: int = Field(ge=1, description="Monotonic per year; readers keep the highest")
    changed_at: datetime
    changed_by: str = Field(description="Staff id of the administrator, or 'system'")
