"""Grid workers, supervisors acting on a request, and departments answering a whistle: all of it
through grid's work API (and intake's staff read for what the resident wrote)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from civicgrid_console.adapters.api import ApiError, Apis
from civicgrid_console.domain.work import queue_rows

#: the actions a worker can take on a request, and the body each sends (from the form's fields)
ACTIONS = ("accept", "notes", "volunteers", "whistle", "transfer", "resolve", "reject", "reassign")


async def queue(apis: Apis, token: str, now: datetime, staff_id: str | None = None):
    path = f"/v1/queues/{staff_id}" if staff_id else "/v1/queue"
    return queue_rows(await apis.grid.call("GET", path, token=token), now)


async def dispatches(apis: Apis, token: str, department: str,
                     now: datetime) -> tuple[list[dict[str, Any]], list[ApiError]]:
    """A department's requests with the dispatches addressed to it, and the problems of those whose
    record could not be read (shown on the page; the others are still listed)."""
    items, problems = [], []
    for row in await queue(apis, token, now):
        try:
            work = await apis.grid.call("GET", f"/v1/requests/{row.request_id}", token=token)
        except ApiError as exc:
            problems.append(exc)
            continue
        mine = {k: v for k, v in (work.get("dispatches") or {}).items() if department in (v.get("departments") or [])}
        items.append({"row": row, "work": work, "dispatches": mine})
    return items, problems


async def my_post(apis: Apis, token: str, sub: str) -> dict[str, Any] | None:
    try:
        return await apis.grid.call("GET", f"/v1/staff/{sub}", token=token)
    except ApiError as exc:
        if exc.status in (403, 404):  # departments and demo people outside the roster have no post
            return None
        raise


async def request_detail(apis: Apis, token: str, rid: str) -> dict[str, Any]:
    work = await apis.grid.call("GET", f"/v1/requests/{rid}", token=token)
    try:
        resident_view = await apis.intake.call("GET", f"/api/v1/requests/{rid}", token=token)
    except ApiError:
        resident_view = None  # a department reads grid's record only
    return {"work": work, "said": resident_view}


async def departments(apis: Apis) -> list[dict[str, Any]]:
    return await apis.grid.call("GET", "/v1/departments")


def action_body(action: str, form) -> dict[str, Any] | None:
    """The JSON body of a worker's action, from the form's fields (grid checks the values)."""
    f = {k: (v.strip() if isinstance(v, str) else v) for k, v in form.items()}
    if action == "accept":
        return None
    if action == "notes":
        return {"note": f.get("note", "")}
    if action == "volunteers":
        body: dict[str, Any] = {"needed_hours": float(f.get("needed_hours") or 1)}
        if f.get("needed_from"):
            body["needed_from"] = f["needed_from"] if "+" in f["needed_from"] else f["needed_from"] + "+08:00"
        return body
    if action == "whistle":
        body = {"departments": form.getlist("departments"), "reason": f.get("reason", "")}
        if f.get("report_back_hours"):
            body["report_back_hours"] = float(f["report_back_hours"])
        return body
    if action == "transfer":
        return {"to_grid": f.get("to_grid", ""), "reason": f.get("reason", "")}
    if action == "resolve":
        return {"resolution_note": f.get("resolution_note", "")}
    if action == "reject":
        return {"reason": f.get("reason", "")}
    if action == "reassign":
        return {"to_staff": f.get("to_staff", ""), "reason": f.get("reason", "")}
    raise ValueError(action)


async def act(apis: Apis, token: str, rid: str, action: str, body: dict[str, Any] | None) -> dict[str, Any]:
    return await apis.grid.call("POST", f"/v1/requests/{rid}/{action}", token=token, json=body)


async def dispatch_act(apis: Apis, token: str, rid: str, dispatch_id: str, step: str, outcome: str = ""):
    body = {"outcome": outcome} if step == "report" else None
    return await apis.grid.call("POST", f"/v1/requests/{rid}/dispatches/{dispatch_id}/{step}", token=token,
                                json=body)
