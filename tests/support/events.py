"""Events the runtime's tests send: a resident's report as intake publishes it."""

from __future__ import annotations

from datetime import UTC, datetime

from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import DEFAULT_CALENDAR
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_contracts.values import Location, TimeLimits


def received(rid: str, description: str = "blocked drain") -> Envelope:
    payload = RequestReceived.starting_clocks(DEFAULT_CALENDAR,
        request_id=rid, service_code="sanitation", service_name="Sanitation",
        time_limits=TimeLimits(response_hours=2, resolution_hours=24), location=Location(lat=39.9, lon=116.3),
        description=description, channel="web", received_at=datetime.now(UTC),
    )
    return Envelope.wrap(payload, source="/civicgrid/test")
