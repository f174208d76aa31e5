"""Residents: the catalogue, a report, following it, rating it. No account: the tracking token
intake returns is the resident's key to their request."""

from __future__ import annotations

from typing import Any

from civicgrid_console.adapters.api import Apis
from civicgrid_console.domain.forms import submission
from civicgrid_console.domain.work import group_catalogue


async def catalogue(apis: Apis, query: str) -> dict[str, list[dict[str, Any]]]:
    return group_catalogue(await apis.intake.call("GET", "/api/v1/services"), query)


async def service(apis: Apis, code: str) -> dict[str, Any]:
    return await apis.intake.call("GET", f"/api/v1/services/{code}")


async def map_outline(apis: Apis) -> dict[str, Any]:
    """The grid layer of the current map (no buildings: a phone downloads grids only)."""
    return await apis.grid.call("GET", "/v1/map/export", params={"buildings": "false"})


async def submit(apis: Apis, svc: dict[str, Any], form) -> dict[str, Any]:
    return await apis.intake.call("POST", "/api/v1/requests", json=submission(svc, form))


async def read(apis: Apis, rid: str, token: str) -> dict[str, Any]:
    return await apis.intake.call("GET", f"/api/v1/requests/{rid}", headers={"X-Request-Token": token})


async def rate(apis: Apis, rid: str, token: str, rating: str, comment: str) -> dict[str, Any]:
    body: dict[str, Any] = {"rating": rating}
    if comment.strip():
        body["comment"] = comment.strip()
    return await apis.intake.call("POST", f"/api/v1/requests/{rid}/rating", json=body,
                                  headers={"X-Request-Token": token})
