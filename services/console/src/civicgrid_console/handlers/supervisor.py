"""Supervisors (community, street, district): the area at a glance, late and escalated requests,
KPIs and the quarterly evaluation, from audit's supervision API and intake's staff list."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date, timedelta
from typing import Any

from civicgrid_console.adapters.api import Apis
from civicgrid_console.domain.work import grid_colours

#: intake's statuses of a request still being handled
OPEN_STATUSES = ("received", "assigned", "accepted", "in_progress", "reopened")
#: pages of intake's staff list read to count open requests per grid (200 each)
MAX_PAGES = 5


async def open_by_grid(apis: Apis, token: str, area: str) -> Counter:
    counts: Counter = Counter()
    cursor = None
    for _ in range(MAX_PAGES):
        page = await apis.intake.call("GET", "/api/v1/requests", token=token, params={
            "status": list(OPEN_STATUSES), "area": area or None, "limit": 200, "cursor": cursor})
        for item in page["items"]:
            if item.get("agency_responsible"):
                counts[item["agency_responsible"]] += 1
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return counts


async def overview(apis: Apis, token: str, area: str) -> dict[str, Any]:
    # side by side: each list is a query of audit's (on the embedded store, a read of every request
    # document), the map and the open counts other services' -- none waits for another
    overdue, escalated, grids, counts = await asyncio.gather(
        apis.audit.call("GET", "/supervision/overdue", token=token, params={"limit": 200}),
        apis.audit.call("GET", "/supervision/escalated", token=token, params={"limit": 200}),
        apis.grid.call("GET", "/v1/map/grids", params={"area": area, "limit": 5000}),
        open_by_grid(apis, token, area))
    grids = grids["grids"]
    state = grid_colours({g["grid"] for g in grids}, overdue, counts)
    return {"overdue": overdue, "escalated": escalated, "grid_state": state,
            "totals": {"open": sum(counts.values()), "overdue": len(overdue), "escalated": len(escalated)}}


async def grid_requests(apis: Apis, token: str, grid: str) -> list[dict[str, Any]]:
    page = await apis.intake.call("GET", "/api/v1/requests", token=token,
                                  params={"area": grid, "status": list(OPEN_STATUSES), "limit": 200})
    return page["items"]


def default_period(today: date) -> tuple[str, str]:
    return (today - timedelta(days=30)).isoformat(), today.isoformat()


#: area codes nest as district(6) + street(3) + community(3) + grid(3)
DIMENSION_OF_CODE_LENGTH = {6: "district", 9: "street", 12: "community", 15: "grid"}


def own_dimension(area: str) -> str:
    """The KPI dimension of a person's own area (a district-scoped supervisor may not ask for
    ``all``: audit refuses any area scope a dimension spanning areas); no scope: ``all``."""
    return DIMENSION_OF_CODE_LENGTH.get(len(area), "all") if area else "all"


async def kpis(apis: Apis, token: str, dimension: str, key: str, start: str, end: str) -> dict[str, Any]:
    return await apis.audit.call("GET", "/kpis", token=token,
                                 params={"dimension": dimension, "key": key or "*", "from": start, "to": end})


async def evaluation(apis: Apis, token: str, quarter: str) -> dict[str, Any]:
    return await apis.audit.call("GET", f"/evaluations/{quarter}", token=token)


async def evaluation_csv(apis: Apis, token: str, quarter: str, dimension: str) -> bytes:
    r = await apis.audit.call("GET", f"/evaluations/{quarter}", token=token,
                              params={"format": "csv", "dimension": dimension}, raw=True)
    return r.content


def quarter_of(today: date) -> str:
    return f"{today.year}Q{(today.month - 1) // 3 + 1}"
