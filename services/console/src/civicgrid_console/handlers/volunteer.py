"""Volunteers: offers (with why I was chosen), bookings, check-in and check-out, hours."""

from __future__ import annotations

from typing import Any

from civicgrid_console.adapters.api import Apis


async def overview(apis: Apis, token: str) -> dict[str, Any]:
    me = await apis.matching.call("GET", "/me", token=token)
    offers = await apis.matching.call("GET", "/me/offers", token=token)
    hours = await apis.matching.call("GET", "/me/hours", token=token)
    hours.sort(key=lambda h: str(h.get("check_in_at") or ""), reverse=True)
    return {"me": me, "offers": offers, "hours": hours,
            "total_hours": round(sum(float(h.get("hours") or 0) for h in hours), 2),
            "entries": {h["request_id"]: h for h in hours}}


async def answer(apis: Apis, token: str, offer_id: str, accept: bool, reason: str = "") -> dict[str, Any]:
    if accept:
        return await apis.matching.call("POST", f"/me/offers/{offer_id}/accept", token=token)
    return await apis.matching.call("POST", f"/me/offers/{offer_id}/decline", token=token,
                                    json={"reason": reason} if reason else None)


async def check(apis: Apis, token: str, rid: str, step: str) -> dict[str, Any]:
    return await apis.matching.call("POST", f"/me/assignments/{rid}/{step}", token=token)
