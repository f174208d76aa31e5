"""Events of the supervision stream owned by audit (topic ``audit.supervision.v1``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from civicgrid_contracts.envelope import EventPayload, register
from civicgrid_contracts.values import ChainLevel

Clock = Literal["response", "resolution", "report_back"]


@register
class RequestEscalated(EventPayload):
    """A time limit passed without the expected event: the request moves one level up the chain."""

    event_type = "civicgrid.request.escalated"

    escalation_id: str = Field(description="Deterministic: request, clock and step; never issued twice")
    clock: Clock
    step: int = Field(ge=1, description="1 for the first escalation of this clock, then 2, 3, ...")
    from_level: ChainLevel
    to_level: ChainLevel
    due_at: datetime
    escalated_at: datetime
    overdue_hours: float
    department: str | None = None
