"""The roster through grid's API: the pickers' areas, an area's posts and staff, a post's A/B,
staff profiles and duty (someone's, or one's own)."""

from __future__ import annotations

from typing import Any

from civicgrid_console.adapters.api import ApiError, Apis
from civicgrid_console.domain.roster import Picked


async def areas(apis: Apis, within: str = "") -> list[dict[str, str]]:
    return (await apis.grid.call("GET", "/v1/map/areas", params={"within": within}))["areas"]


async def pickers(apis: Apis, chosen: Picked) -> dict[str, list[dict[str, str]]]:
    """The options of the three pickers: every street, the chosen street's communities, the chosen
    community's grids."""
    streets = [s for d in await areas(apis) for s in await areas(apis, d["code"])]
    communities = await areas(apis, chosen.street) if chosen.street else []
    grids = await areas(apis, chosen.community) if chosen.community else []
    return {"streets": streets, "communities": communities, "grids": grids}


async def roster_of(apis: Apis, token: str, area: str) -> dict[str, Any]:
    """An area's posts and the staff who may hold them: a grid's post is held by its community's
    workers, so a grid's page lists its community's people (an area above a grid, its own)."""
    posts = (await apis.grid.call("GET", "/v1/roster/posts", token=token, params={"area": area}))["posts"]
    people_area = area[:12] if len(area) == 15 else area
    try:
        people = await apis.grid.call("GET", "/v1/roster/staff", token=token, params={"area": people_area})
    except ApiError as exc:
        if exc.status != 403:  # a supervisor of one grid sees their own area's people only
            raise
        people = await apis.grid.call("GET", "/v1/roster/staff", token=token, params={"area": area})
    return {"posts": posts, "people": people}


async def change_post(apis: Apis, token: str, pid: str, body: dict[str, Any], reason: str) -> dict[str, Any]:
    return await apis.grid.call("PUT", f"/v1/roster/posts/{pid}", token=token, json=body, headers=_why(reason))


async def set_duty(apis: Apis, token: str, sid: str, body: dict[str, Any], reason: str) -> dict[str, Any]:
    return await apis.grid.call("PUT", f"/v1/staff/{sid}/duty", token=token, json=body, headers=_why(reason))


async def update_member(apis: Apis, token: str, sid: str, body: dict[str, Any], reason: str) -> dict[str, Any]:
    return await apis.grid.call("PUT", f"/v1/roster/staff/{sid}", token=token, json=body, headers=_why(reason))


async def add_member(apis: Apis, token: str, body: dict[str, Any], reason: str) -> dict[str, Any]:
    return await apis.grid.call("POST", "/v1/roster/staff", token=token, json=body, headers=_why(reason))


async def my_posts(apis: Apis, token: str, sub: str) -> list[dict[str, Any]]:
    """The posts the signed-in person holds, with who serves each now (none for someone not on the roster)."""
    try:
        return await apis.grid.call("GET", f"/v1/staff/{sub}/posts", token=token)
    except ApiError as exc:
        if exc.status in (403, 404):
            return []
        raise


async def set_own_duty(apis: Apis, token: str, body: dict[str, Any]) -> dict[str, Any]:
    return await apis.grid.call("PUT", "/v1/me/duty", token=token, json=body)


def _why(reason: str) -> dict[str, bytes]:
    """The change's reason for audit's trail, as UTF-8 (a reason in Chinese; grid takes 200 bytes)."""
    raw = " ".join((reason or "").split()).encode()[:200].decode(errors="ignore").encode()
    return {"X-Change-Reason": raw} if raw else {}
