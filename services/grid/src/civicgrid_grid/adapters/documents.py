"""The stored shapes of grid's request, staff and post documents, and the ONE path per collection
older shapes are read through.

Shapes (``schema_version``):
- 1 (no field): the ``RequestReceived`` kept whole in ``received``: LZ4-packed JSON (``pack_json``)
  or, earlier, a plain sub-document; its own schema version 1 (before deadlines were carried) is
  brought up by the event's upcaster (``civicgrid_contracts.envelope.upcast``).
- 2: plain named fields (see services/grid/README.md); what grid uses of the received request is
  in its own fields, and a ``version`` counter guards every update.

Staff and posts (``ROSTER_SCHEMA_VERSION``):
- 1 (no field): profile, duty and load; posts with their holders. No ``version``, and staff had no
  record of training: every roster import made each grid worker A on one line and B on the other,
  so a shape-1 member is read as trained for every line, on the roster (``active``), not away.
- 2: a ``version`` counter guards every profile, duty and holder change (not the load counter,
  which the assigner guards by its own value); staff carry ``lines``, ``active``, ``away_until``.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from civicgrid_contracts.envelope import upcast
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_grid.domain.assignment import Staff
from civicgrid_grid.domain.request import Dispatch, RequestCase, received_fields
from civicgrid_grid.domain.roster import LINES, Post, StaffMember

SCHEMA_VERSION = 2
#: the shape of grid's other collections (chain, departments, services, maps): one so far; a
#: document without the field is of that shape
FIRST_SCHEMA_VERSION = 1
#: the shape of staff and post documents
ROSTER_SCHEMA_VERSION = 2
#: document field of the applied event ids (the runtime's idempotency guard)
APPLIED = "_applied"
_NOT_STORED = {"id", "events", "releases", "applied"}
_STORED = [f.name for f in fields(RequestCase) if f.name not in _NOT_STORED]


def _unpack(blob: bytes) -> dict[str, Any]:
    from civicgrid_runtime.store import unpack_json  # the one reader of the retired packed form

    return unpack_json(blob)


def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    received = doc.pop("received", None)
    if received is not None:
        data = _unpack(received) if isinstance(received, bytes | bytearray) else dict(received)
        if "response_due" not in data:  # kept before deadlines were carried: the event's own upcaster
            data = upcast(RequestReceived.event_type, 1, data)
        ev = RequestReceived.model_validate(data)
        doc = {**received_fields(ev, doc.get("correlation_id")), **doc}
        doc["due_response"], doc["due_resolution"] = ev.response_due, ev.resolution_due
    doc.pop("prio", None)
    doc.setdefault("version", 0)
    doc["schema_version"] = 2
    return doc


_UPCASTERS = {1: _v1_to_v2}
#: fields of older shapes that the current one no longer has (removed when such a document is saved)
RETIRED_FIELDS = ("received",)


def upcast_request(doc: dict[str, Any]) -> dict[str, Any]:
    """Any stored shape of a request document brought to the current one (a copy)."""
    doc = dict(doc)
    version = doc.get("schema_version", 1)
    while version < SCHEMA_VERSION:
        doc = _UPCASTERS[version](doc)
        version = doc["schema_version"]
    return doc


def _aware(value: Any) -> Any:
    # BSON dates come back naive UTC unless the client is tz-aware
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


def case_from_document(doc: dict[str, Any]) -> RequestCase:
    doc = upcast_request(doc)
    values = {k: _aware(doc[k]) for k in _STORED if k in doc and doc[k] is not None}
    values["dispatches"] = {k: Dispatch(**{f: _aware(v) for f, v in d.items()})
                            for k, d in (doc.get("dispatches") or {}).items()}
    return RequestCase(id=doc["_id"], applied=list(doc.get(APPLIED) or []), **values)


def case_to_document(case: RequestCase) -> dict[str, Any]:
    """The whole stored state (``_id`` and the applied list included)."""
    doc: dict[str, Any] = {"_id": case.id, "schema_version": SCHEMA_VERSION}
    for name in _STORED:
        doc[name] = getattr(case, name)
    doc["dispatches"] = {k: dict(vars(d)) for k, d in case.dispatches.items()}
    # the queue's sort key: urgent first
    doc["prio"] = 0 if case.priority == "urgent" else 1
    doc[APPLIED] = list(case.applied)
    return doc


# ------------------------------------------------------------------------------ staff and posts


def upcast_staff(doc: dict[str, Any]) -> dict[str, Any]:
    """Any stored shape of a staff document brought to the current one (a copy)."""
    doc = dict(doc)
    if doc.get("schema_version", 1) < 2:
        doc.setdefault("lines", list(LINES))
        doc.setdefault("active", True)
        doc.setdefault("away_until", None)
        doc.setdefault("version", 0)
        doc["schema_version"] = 2
    return doc


def with_roster_defaults(doc: dict[str, Any]) -> dict[str, Any]:
    """An imported staff document in the current shape: what the import does not say is what a
    shape-1 document meant (trained for every line, on the roster, not away)."""
    return {"lines": list(LINES), "active": True, "away_until": None, **doc}


def upcast_post(doc: dict[str, Any]) -> dict[str, Any]:
    """Any stored shape of a post document brought to the current one (a copy)."""
    doc = dict(doc)
    if doc.get("schema_version", 1) < 2:
        doc.setdefault("version", 0)
        doc["schema_version"] = 2
    return doc


def member_from_document(doc: dict[str, Any]) -> StaffMember:
    d = upcast_staff(doc)
    return StaffMember(d["_id"], d.get("name") or "", d.get("role") or "grid_worker", d.get("area") or "",
                       lines=tuple(d.get("lines") or ()), active=bool(d.get("active", True)),
                       limit=int(d.get("limit", 20)), duty=d.get("duty") or "on", leave_until=d.get("leave_until"),
                       away_until=_aware(d.get("away_until")), load=int(d.get("load", 0)),
                       version=int(d.get("version", 0)))


def member_fields(m: StaffMember) -> dict[str, Any]:
    """A member's stored profile and duty (``_id``, ``version``, the load counter not included)."""
    return {"name": m.name, "role": m.role, "area": m.area, "level": m.level, "lines": list(m.lines),
            "active": m.active, "limit": m.limit, "duty": m.duty, "leave_until": m.leave_until,
            "away_until": m.away_until, "schema_version": ROSTER_SCHEMA_VERSION}


def candidate_of(doc: dict[str, Any]) -> Staff:
    """What assignment needs of a staff document (also of a projection to its load fields)."""
    return Staff(doc["_id"], doc.get("duty", "on"), doc.get("leave_until"), int(doc.get("load", 0)),
                 int(doc.get("limit", 20)), _aware(doc.get("away_until")), bool(doc.get("active", True)))


def post_from_document(doc: dict[str, Any]) -> Post:
    d = upcast_post(doc)
    return Post(d["_id"], d["area"], d["line"], d.get("level") or "grid", d.get("a") or "", d.get("b") or None,
                version=int(d.get("version", 0)))
