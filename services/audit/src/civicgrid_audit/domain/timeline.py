"""Per-request timeline and current state, as a pure fold over events.

Entries are ordered by the event's own domain time (``received_at``, ``accepted_at`` ...), then by
the lifecycle rank of its type, then by event id: a deterministic total order that does not depend
on the order in which topics were delivered. The state is recomputed from the ordered entries, so an
event arriving late (from another topic) lands in its right place and the state is still right; an
event id already present changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from civicgrid_contracts import Envelope
from civicgrid_contracts.envelope import upcast
from civicgrid_contracts.values import CHAIN_LEVELS

PREFIX = "civicgrid."

#: lifecycle rank used to break ties between events with the same domain time
RANK = {
    "request.received": 0, "request.merged": 1, "request.unmerged": 2, "request.assigned": 3,
    "request.transferred": 4, "request.reassigned": 5, "request.accepted": 6, "request.noted": 7,
    "request.volunteer_requested": 8, "request.department_dispatched": 8, "volunteer.offered": 9,
    "volunteer.declined": 10, "volunteer.offer_expired": 10, "volunteer.offer_withdrawn": 11,
    "volunteer.accepted": 11, "volunteer.unmatched": 11, "request.department_acknowledged": 12,
    "volunteer.service_delivered": 13, "request.department_reported": 13, "request.escalated": 14,
    "request.rejected": 15, "request.resolved": 15, "request.rated": 16, "request.reopened": 17,
    "request.closed": 18,
}
TIME_FIELD = {
    "request.received": "received_at", "request.assigned": "assigned_at", "request.accepted": "accepted_at",
    "request.noted": "noted_at", "request.volunteer_requested": "requested_at",
    "request.department_dispatched": "dispatched_at", "request.department_acknowledged": "acknowledged_at",
    "request.department_reported": "reported_at", "request.resolved": "resolved_at",
    "request.transferred": "transferred_at", "request.reassigned": "reassigned_at",
    "request.rejected": "rejected_at", "request.rated": "rated_at", "request.reopened": "reopened_at",
    "request.closed": "closed_at", "request.escalated": "escalated_at", "volunteer.offered": "offered_at",
    "volunteer.accepted": "accepted_at", "volunteer.declined": "declined_at",
    "volunteer.offer_expired": "expired_at", "volunteer.offer_withdrawn": "withdrawn_at",
    "volunteer.unmatched": "unmatched_at", "volunteer.service_delivered": "ended_at",
}
WHO_FIELDS = ("staff_id", "assignee_id", "to_assignee", "volunteer_id", "department", "requested_by", "reporter_id")


def parse_time(v: Any) -> datetime:
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    t = datetime.fromisoformat(str(v))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def short_type(t: str) -> str:
    return t.removeprefix(PREFIX)


def entry_from_envelope(env: Envelope, *, topic: str, partition: int, offset: int,
                        data: dict[str, Any] | None = None) -> dict[str, Any]:
    """One timeline entry: what, when, who, from which service (plus the payload for the fold).
    ``data``: the payload dumped in JSON mode, if the caller has it already (the log needs it too)."""
    kind = short_type(env.type)
    if data is None:
        data = env.data.model_dump(mode="json")
    tf = TIME_FIELD.get(kind)
    when = parse_time(data[tf]) if tf and data.get(tf) else parse_time(env.time)
    who = next((str(data[f]) for f in WHO_FIELDS if data.get(f)), "system" if kind == "request.escalated" else None)
    return {
        "id": env.id, "type": kind, "time": when.astimezone(UTC).isoformat(), "who": who,
        "service": env.source.rsplit("/", 1)[-1], "topic": topic, "partition": partition, "offset": offset,
        "data": data,
    }


def sort_key(e: dict[str, Any]) -> tuple:
    return (parse_time(e["time"]), RANK.get(e["type"], 50), e["id"])


def ordered(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entries, key=sort_key)


RECEIVED_TYPE = "civicgrid.request.received"


def _iso(t: datetime | None) -> str | None:
    return t.astimezone(UTC).isoformat() if t else None


def comes_after(entries: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    """Whether every entry of ``new`` sorts after all of ``entries``: then the state of both is the
    state of ``entries`` folded on with ``new`` (``fold(new, start=...)``), without their payloads."""
    if not entries or not new:
        return True
    last = max(sort_key(e) for e in entries)
    return all(sort_key(e) > last for e in new)


def fold(entries: list[dict[str, Any]], *, as_of: datetime | None = None,
         start: dict[str, Any] | None = None) -> dict[str, Any]:
    """The current state of a request from its (unordered) entries; ``as_of`` cuts at a moment.
    ``start``: the state of the entries before these (all sorting before them), folded on in place."""
    s: dict[str, Any] = start if start is not None else {
        "status": "unknown", "received_at": None, "service_code": None, "service_group": None,
        "handled_by": [], "priority": None, "channel": None, "time_limits": None, "response_due": None,
        "resolution_due": None, "merged_into": None, "area": {}, "area_code": None, "assignee": None,
        "holder": None, "level": None, "property_company": None, "accepted_at": None, "accepted_by": None,
        "resolved_at": None, "resolved_by": None, "rejected_at": None, "closed_at": None, "rating": None,
        "rated_at": None, "reopen_count": 0, "dispatches": {}, "escalations": [], "volunteer": None,
        "volunteer_hours": 0.0, "events": 0, "last_event_at": None,
    }
    for e in ordered(entries):
        when = parse_time(e["time"])
        if as_of is not None and when > as_of:
            break
        d, k = e["data"], e["type"]
        s["events"] += 1
        s["last_event_at"] = _iso(when)
        if k == "request.received":
            s.update(status="received" if s["status"] == "unknown" else s["status"], received_at=_iso(when),
                     service_code=d["service_code"], service_group=d.get("service_group"),
                     handled_by=list(d.get("handled_by") or []), priority=d.get("priority"), channel=d.get("channel"),
                     time_limits=d["time_limits"])
            if "response_due" not in d:  # an entry stored before deadlines were carried: the event's upcaster
                d = upcast(RECEIVED_TYPE, 1, d)
            # the deadlines intake set when the request was received (the same instants in every service)
            s["response_due"] = _iso(parse_time(d["response_due"]))
            s["resolution_due"] = _iso(parse_time(d["resolution_due"]))
        elif k == "request.merged":
            s.update(status="merged", merged_into=d["into_request_id"])
        elif k == "request.unmerged":
            s.update(status="received", merged_into=None)
        elif k in ("request.assigned", "request.reassigned"):
            if k == "request.assigned":
                area = {x: d["area"].get(x) for x in ("district", "street", "community", "grid", "building")}
                s.update(area=area, area_code=area.get("grid") or area.get("community") or area.get("street")
                         or area.get("district"), holder=d.get("holder"), property_company=d.get("property_company"),
                         assignee=d["assignee_id"], level=d.get("level", "grid"))
            else:
                s.update(assignee=d["to_assignee"], level=d["level"])
            if s["status"] in ("received", "unknown", "reopened"):
                s["status"] = "assigned"
        elif k == "request.transferred":
            s["area"] = {**s["area"], "grid": d["to_grid"]}
            s["area_code"] = d["to_grid"]
        elif k == "request.accepted":
            if not s["accepted_at"]:
                s.update(accepted_at=_iso(when), accepted_by=d["staff_id"])
            if s["status"] in ("received", "assigned", "unknown", "reopened"):
                s["status"] = "accepted"
        elif k in ("request.volunteer_requested", "volunteer.accepted"):
            if k == "volunteer.accepted":
                s["volunteer"] = d["volunteer_id"]
            if s["status"] in ("assigned", "accepted"):
                s["status"] = "in_progress"
        elif k == "volunteer.service_delivered":
            s["volunteer_hours"] = round(s["volunteer_hours"] + float(d["hours"]), 4)
        elif k == "request.department_dispatched":
            s["dispatches"][d["dispatch_id"]] = {"departments": list(d["departments"]), "joint": d["joint"],
                                                 "report_by": _iso(parse_time(d["report_by"])),
                                                 "dispatched_at": _iso(when), "reported": {}}
            if s["status"] in ("assigned", "accepted"):
                s["status"] = "in_progress"
        elif k == "request.department_reported":
            disp = s["dispatches"].get(d["dispatch_id"])
            if disp is not None:
                disp["reported"][d["department"]] = _iso(when)
        elif k == "request.resolved":
            s.update(status="resolved", resolved_at=_iso(when), resolved_by=d["staff_id"])
        elif k == "request.rejected":
            s.update(status="rejected", rejected_at=_iso(when))
        elif k == "request.rated":
            s.update(rating=d["rating"], rated_at=_iso(when))
        elif k == "request.reopened":
            s.update(status="reopened", resolved_at=None, resolved_by=None, closed_at=None,
                     reopen_count=max(s["reopen_count"] + 1, int(d.get("reopen_count") or 1)))
        elif k == "request.closed":
            s.update(status="closed", closed_at=_iso(when))
        elif k == "request.escalated":
            s["escalations"].append({
                "escalation_id": d["escalation_id"], "clock": d["clock"], "step": d["step"],
                "from_level": d["from_level"], "to_level": d["to_level"], "due_at": d["due_at"],
                "escalated_at": _iso(when), "department": d.get("department"),
                "overdue_hours": d.get("overdue_hours")})
    return s


def next_level(level: str | None) -> str | None:
    lvl = level if level in CHAIN_LEVELS else "grid"
    i = CHAIN_LEVELS.index(lvl)
    return CHAIN_LEVELS[i + 1] if i + 1 < len(CHAIN_LEVELS) else None


def higher_level(a: str | None, b: str | None) -> str:
    ia = CHAIN_LEVELS.index(a) if a in CHAIN_LEVELS else -1
    ib = CHAIN_LEVELS.index(b) if b in CHAIN_LEVELS else -1
    return CHAIN_LEVELS[max(ia, ib, 0)] if max(ia, ib) >= 0 else "grid"


def clocks(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The time-limit clocks of a request: each with its due time and whether it is still running."""
    if not state.get("received_at") or not state.get("time_limits"):
        return []
    finished = state["status"] in ("merged", "rejected", "closed", "resolved")
    out = [
        {"clock": "response", "department": None, "dispatch_id": None, "base_due": state["response_due"],
         "active": not finished and not state["accepted_at"]},
        {"clock": "resolution", "department": None, "dispatch_id": None, "base_due": state["resolution_due"],
         "active": not finished},
    ]
    for did, disp in sorted(state["dispatches"].items()):
        for dept in disp["departments"]:
            out.append({"clock": "report_back", "department": dept, "dispatch_id": did, "base_due": disp["report_by"],
                        "active": dept not in disp["reported"] and state["status"] not in ("merged", "rejected",
                                                                                           "closed")})
    return out


def clock_id(request_id: str, c: dict[str, Any]) -> str:
    if c["clock"] == "report_back":
        return f"{request_id}|report_back|{c['dispatch_id']}|{c['department']}"
    return f"{request_id}|{c['clock']}"
