"""Administrators: the service catalogue (intake), the map's import, versions and activation,
departments and the roster (grid), the working calendar (intake)."""

from __future__ import annotations

import json
from typing import Any

from civicgrid_console.adapters.api import ApiError, Apis

#: at most this many features of a rejected upload are drawn beside its defects
DRAWN_FEATURES = 3000


async def catalogue(apis: Apis) -> list[dict[str, Any]]:
    return await apis.intake.call("GET", "/api/v1/services", params={"include_retired": "true"})


async def service(apis: Apis, code: str) -> dict[str, Any]:
    return await apis.intake.call("GET", f"/api/v1/services/{code}")


def if_match(revision: str) -> dict[str, str]:
    """The header naming the revision an edit form was loaded at (none for a form without one): intake
    refuses the save with 412 when someone else saved since (ADR 0903)."""
    return {"If-Match": f'"{revision}"'} if revision.isdigit() else {}


async def update_service(apis: Apis, token: str, code: str, body: dict[str, Any], revision: str) -> dict[str, Any]:
    """The whole spec (domain/catalogue.body_of built it from the service as it is and the form),
    saved if the service is still at ``revision``."""
    return await apis.intake.call("PUT", f"/api/v1/services/{code}", token=token, json=body,
                                  headers=if_match(revision))


def parse_upload(raw: bytes) -> dict[str, Any]:
    """The uploaded file as JSON (grid validates everything else, as a whole)."""
    try:
        fc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(fc, dict):
        raise ValueError("not a GeoJSON object")
    return fc


async def import_map(apis: Apis, token: str, fc: dict[str, Any]) -> dict[str, Any]:
    """Import without activating. Rejected: the defects, and the features to draw them on."""
    try:
        out = await apis.grid.call("POST", "/v1/map/import", token=token, json=fc, params={"activate": "false"})
    except ApiError as exc:
        if exc.status != 422 or not exc.errors:
            raise
        return {"defects": exc.errors, "drawn": drawable(fc, exc.errors)}
    return {"imported": out}


def drawable(fc: dict[str, Any], defects: list[dict[str, Any]]) -> dict[str, Any]:
    """The upload's area features (buildings only where a defect names them), each tagged with
    whether a defect names it: the page draws them, defective ones highlighted."""
    features = fc.get("features") if isinstance(fc.get("features"), list) else []
    named = {d.get("feature") for d in defects if isinstance(d.get("feature"), int)}
    out = []
    for i, f in enumerate(features):
        if not isinstance(f, dict) or not isinstance(f.get("geometry"), dict):
            continue
        props = f.get("properties") if isinstance(f.get("properties"), dict) else {}
        if props.get("kind") == "building" and i not in named:
            continue
        out.append({"type": "Feature", "geometry": f["geometry"],
                    "properties": {"index": i, "code": props.get("code"), "kind": props.get("kind"),
                                   "defect": i in named}})
        if len(out) >= DRAWN_FEATURES:
            break
    return {"type": "FeatureCollection", "features": out}


async def versions(apis: Apis, token: str) -> dict[str, Any]:
    return await apis.grid.call("GET", "/v1/map/versions", token=token)


async def activate(apis: Apis, token: str, version: int) -> dict[str, Any]:
    return await apis.grid.call("POST", f"/v1/map/versions/{version}/activate", token=token)


async def departments(apis: Apis) -> list[dict[str, Any]]:
    return await apis.grid.call("GET", "/v1/departments")


async def calendar_years(apis: Apis) -> list[dict[str, Any]]:
    """Every year intake holds a calendar for (the shipped default among them), oldest first."""
    return await apis.intake.call("GET", "/api/v1/calendar")


async def calendar_year(apis: Apis, year: int) -> dict[str, Any]:
    """One year (a year nobody defined comes back ``derived`` from the nearest defined year's week)."""
    return await apis.intake.call("GET", f"/api/v1/calendar/{year}")


async def define_year(apis: Apis, token: str, year: int, body: dict[str, Any], revision: str) -> dict[str, Any]:
    """A new version of the year, saved if the year is still at ``revision`` (0: nobody defined it)."""
    return await apis.intake.call("PUT", f"/api/v1/calendar/{year}", token=token, json=body,
                                  headers=if_match(revision))
