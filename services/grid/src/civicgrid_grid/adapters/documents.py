"""The stored shapes of grid's request documents, and the ONE path older shapes are read through.

Shapes (``schema_version``):
- 1 (no field): the ``RequestReceived`` kept whole in ``received``: LZ4-packed JSON (``pack_json``)
  or, earlier, a plain sub-document; its own schema version 1 (before deadlines were carried) is
  brought up by the event's upcaster (``civicgrid_contracts.envelope.upcast``).
- 2: plain named fields (see services/grid/README.md); what grid uses of the received request is
  in its own fields, and a ``version`` counter guards every update.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from civicgrid_contracts.envelope import upcast
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_grid.domain.request import Dispatch, RequestCase, received_fields

SCHEMA_VERSION = 2
#: the shape of grid's other collections (staff, posts, chain, departments, services, maps): one so
#: far; a document without the field is of that shape
FIRST_SCHEMA_VERSION = 1
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
