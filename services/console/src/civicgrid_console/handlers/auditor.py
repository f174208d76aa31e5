"""Auditors: a request's timeline as of a moment, the logs' verification and checkpoints, an
event's inclusion proof (audit's API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from civicgrid_console.adapters.api import Apis


def as_of_moment(local: str, tz: ZoneInfo) -> str | None:
    """``2026-12-02T16:40`` typed in the office's time zone, as ISO 8601 with its offset."""
    if not local:
        return None
    dt = datetime.fromisoformat(local)
    return (dt if dt.tzinfo else dt.replace(tzinfo=tz)).isoformat()


async def timeline(apis: Apis, token: str, rid: str, as_of: str | None) -> dict[str, Any]:
    return await apis.audit.call("GET", f"/requests/{rid}/timeline", token=token, params={"as_of": as_of})


async def logs(apis: Apis, token: str) -> list[dict[str, Any]]:
    out = await apis.audit.call("GET", "/audit/logs", token=token)
    for log in out:
        log["verify"] = await apis.audit.call("GET", f"/audit/logs/{log['log']}/verify", token=token)
    return out


async def proof(apis: Apis, token: str, event_id: str) -> dict[str, Any]:
    return await apis.audit.call("GET", f"/audit/events/{event_id}/proof", token=token)
