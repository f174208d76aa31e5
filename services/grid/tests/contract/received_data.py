"""A RequestReceived's data as an earlier grid kept it."""

from __future__ import annotations

from datetime import UTC, datetime

from civicgrid_contracts.calendar import DEFAULT_CALENDAR
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_contracts.values import Location, TimeLimits


def received_data(rid: str) -> dict:
    return RequestReceived.starting_clocks(
        DEFAULT_CALENDAR, request_id=rid, service_code="repair", service_name="Repair",
        time_limits=TimeLimits(response_hours=2, resolution_hours=48), location=Location(lat=39.9, lon=116.3),
        description="d", channel="web", received_at=datetime(2026, 12, 1, 1, 0, tzinfo=UTC)).model_dump(mode="json")
