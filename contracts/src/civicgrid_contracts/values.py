"""Value types shared by several event streams. None of them can hold a resident's name, phone or
e-mail: people appear only as pseudonymous ids."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Handler = Literal["grid", "department", "volunteer", "property"]
Channel = Literal["web", "app", "hotline", "walk_in", "grid_patrol", "open311"]
Rating = Literal["satisfied", "basically_satisfied", "unsatisfied"]
Calendar = Literal["business", "calendar"]
Priority = Literal["normal", "urgent"]
#: The supervision chain, lowest first. Escalation climbs it one level at a time.
CHAIN_LEVELS: tuple[str, ...] = ("unit", "building", "grid", "community", "street", "district")
ChainLevel = Literal["unit", "building", "grid", "community", "street", "district"]
ActorKind = Literal["resident", "operator", "staff", "supervisor", "department", "volunteer", "system"]


class Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Actor(Value):
    kind: ActorKind
    id: str = Field(description="Pseudonymous id: staff id, department code, volunteer id or reporter id")


class Location(Value):
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    building_id: str | None = None
    address_text: str | None = Field(default=None, max_length=500)
    cell: str | None = Field(default=None, description="H3 cell (resolution 9) of lat/lon, when known")


class TimeLimits(Value):
    """A service's time limits. Hours are business hours when ``calendar == 'business'``."""

    response_hours: float = Field(gt=0, description="From received to accepted (the response)")
    resolution_hours: float = Field(gt=0, description="From received to resolved")
    report_back_hours: float | None = Field(default=None, gt=0, description="Department report-back limit")
    calendar: Calendar = "business"


class AreaPath(Value):
    """Where a request is located in the hierarchy; codes follow area(6)+street(3)+community(3)+seq(3)."""

    district: str | None = None
    street: str | None = None
    community: str | None = None
    grid: str | None = None
    building: str | None = None


class TimeWindow(Value):
    start: datetime
    end: datetime
