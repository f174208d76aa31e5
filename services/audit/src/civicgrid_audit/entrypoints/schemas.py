"""API schemas (read models), separate from the stored documents."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Dimension = Literal["all", "district", "street", "community", "grid", "staff", "property", "service", "department"]


class TimelineEntryRead(BaseModel):
    id: str
    type: str = Field(description="Event type without the 'civicgrid.' prefix")
    time: str = Field(description="When it happened (the event's own time), ISO 8601 UTC")
    who: str | None = Field(description="Pseudonymous actor id (staff, department, volunteer, reporter) or 'system'")
    service: str = Field(description="Producing service")
    topic: str
    partition: int
    offset: int
    data: dict[str, Any]


class RequestTimelineRead(BaseModel):
    request_id: str
    as_of: str | None
    state: dict[str, Any]
    timeline: list[TimelineEntryRead]


class OverdueRead(BaseModel):
    request_id: str
    clock: str
    department: str | None
    area_code: str | None
    due_at: str
    overdue_hours: float = Field(description="Working hours late (calendar hours for calendar-hour limits)")
    overdue_calendar_hours: float
    escalation_steps: int
    level: str


class EscalatedRead(BaseModel):
    request_id: str
    area_code: str | None
    status: str
    escalations: int
    level: str
    last_clock: str
    late_since: str
    late_hours: float


class KPIRead(BaseModel):
    """Figures for one dimension key over a period of received days (see the service docs)."""

    dimension: str
    key: str
    from_: str = Field(alias="from")
    to: str
    received: int
    counted: int = Field(description="received minus merged duplicates and rejected (out of scope)")
    excluded: int
    responded: int
    resolved: int
    rated: int
    satisfied: int
    basically_satisfied: int
    unsatisfied: int
    response_rate: float | None = Field(description="accepted within the response limit / response due or done")
    resolution_rate: float | None = Field(description="resolved / counted")
    satisfaction_rate: float | None = Field(description="(satisfied + basically satisfied) / rated")
    response_on_time_rate: float | None
    resolution_on_time_rate: float | None
    reopen_rate: float | None = Field(description="reopened at least once / resolved")
    overdue: int = Field(description="requests that missed at least one limit")
    escalations: int
    dispatched: int
    reported: int
    report_back_on_time_rate: float | None
    median_handling_hours: float | None
    p90_handling_hours: float | None
    median_response_hours: float | None
    p90_response_hours: float | None

    model_config = {"populate_by_name": True}


class VerifyRead(BaseModel):
    log: str
    ok: bool
    size: int
    checkpoints_checked: int
    root: str | None = None
    problem: dict[str, Any] | None
