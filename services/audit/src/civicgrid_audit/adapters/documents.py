"""The stored shape of every audit collection, and the one path that reads their older shapes.

Every document audit writes is plain BSON with named fields and carries ``schema_version`` (the
table in services/audit/README.md). A reader never checks for an older shape itself: each document
read goes through ``upcast(collection, doc)``, which applies the registered upcasters one version
after another, in the spirit of the event upcasters in ``contracts/`` -- so an older database is
read without being migrated first, and a shape is retired by deleting its upcaster once no database
holds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from civicgrid_audit.domain import clocks, kpi, timeline
from civicgrid_contracts.calendar import DEFAULT_CALENDAR
from civicgrid_runtime.store import unpack_json

REQUESTS, COUNTERS, DEADLINES, SERVICES = "requests", "kpi_counters", "deadlines", "services"
RECORDS, HEADS, CHECKPOINTS, CLAIMS = "log_records", "log_heads", "checkpoints", "escalation_claims"
KPI_POSITIONS = "kpi_positions"
#: which start-up migrations a database has been through (adapters/upgrade.py)
MIGRATIONS = "migrations"

#: the version each collection's writers write now (``deadlines`` is written no more: version 3 of a
#: request keeps its clocks; an older database's documents are still read, see the scanner)
CURRENT: dict[str, int] = {REQUESTS: 4, RECORDS: 2, COUNTERS: 1, DEADLINES: 1, SERVICES: 1, HEADS: 1,
                           CHECKPOINTS: 1, CLAIMS: 2, KPI_POSITIONS: 1, MIGRATIONS: 1}
#: the fields of one audit-log record, in the order of a packed block's rows (version 1)
RECORD_FIELDS = ("seq", "offset", "event_id", "raw", "leaf", "prev", "chain")

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(collection: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function turning a ``collection`` document of ``from_version`` into a later one
    (it sets the ``schema_version`` it produces)."""

    def wrap(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(collection, from_version)] = fn
        return fn

    return wrap


def family(collection: str) -> str:
    """The collection whose shapes a stored collection holds (``requests_00`` holds requests,
    ``kpi_counters_p3`` the counters sharded by partition of an older version)."""
    if collection.startswith(REQUESTS + "_"):
        return REQUESTS
    if collection.startswith(COUNTERS + "_p"):
        return COUNTERS
    return collection


def version_of(collection: str, doc: dict[str, Any]) -> int:
    if "schema_version" in doc:
        return int(doc["schema_version"])
    if family(collection) == REQUESTS:
        return 1  # plain or packed, before versions (one upcaster reads both)
    return 0


def upcast(collection: str, doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """``doc`` as the current version of its collection's shape (changed in place and returned)."""
    if doc is None:
        return None
    name = family(collection)
    version, current = version_of(name, doc), CURRENT[name]
    while version < current:
        step = _UPCASTERS.get((name, version))
        if step is None:
            raise ValueError(f"no upcaster for {name} documents of version {version} (_id {doc.get('_id')!r})")
        doc = step(doc)
        version = int(doc["schema_version"])
    return doc


def stamped(collection: str, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with the current ``schema_version`` of ``collection`` (for inserts and ``$set``)."""
    return {**fields, "schema_version": CURRENT[family(collection)]}


# ------------------------------------------------------------------------------------- requests


def request_summary(state: dict[str, Any]) -> dict[str, Any]:
    """The request's plain, indexed fields the supervision lists filter and sort on (derived from its
    state, written with it)."""
    escalations = state.get("escalations") or []
    late_since = min((timeline.parse_time(e["due_at"]) for e in escalations), default=None)
    last = max(escalations, key=lambda e: (e["escalated_at"], e["step"])) if escalations else None
    return {
        "status": state["status"], "area_code": state.get("area_code") or "",
        "open": state["status"] not in ("resolved", "closed", "rejected", "merged"),
        "escalation_count": len(escalations), "late_since": late_since,
        "escalated_to": last["to_level"] if last else None, "last_escalated_clock": last["clock"] if last else None,
    }


@upcaster(REQUESTS, 1)
def _request_before_versions(doc: dict[str, Any]) -> dict[str, Any]:
    """Before versions a request kept its timeline and KPI contribution in one LZ4 (earlier zstd)
    compressed JSON blob ``_body`` and its state in another, ``_state``; before that, as plain
    ``timeline`` and ``state``. Its contribution was ``_kc``, its pending deltas ``_kp``."""
    if "_body" in doc:
        doc.update(unpack_json(doc.pop("_body")))
    if "_state" in doc:
        doc["state"] = unpack_json(doc.pop("_state"))
    doc["kpi_contribution"] = doc.pop("_kc", None) or {}
    doc["kpi_pending"] = doc.pop("_kp", None) or {}
    doc.update(request_summary(doc["state"]), schema_version=2)
    return doc


@upcaster(REQUESTS, 2)
def _request_before_clocks(doc: dict[str, Any]) -> dict[str, Any]:
    """Version 2 kept its clocks in ``deadlines`` (one document each, the step and next due time
    written by the scanner). They follow from the state (domain/clocks.py); the next due time of a
    clock that escalated already is set here on the shipped default calendar with the clock's own
    limit as the period (a platform-wide setting is not at hand), until the request is next written.
    Its KPI contribution counted in a month bucket too, beside the day: month buckets are counted no
    more, so they leave its contribution and pending deltas (the next write's difference then
    touches day buckets only)."""
    doc["clocks"] = clocks.clocks_of(doc["_id"], doc["state"], DEFAULT_CALENDAR)
    doc["kpi_contribution"] = {cid: m for cid, m in (doc.get("kpi_contribution") or {}).items()
                               if not kpi.is_month_bucket(cid)}
    doc["kpi_pending"] = {tag: {cid: m for cid, m in delta.items() if not kpi.is_month_bucket(cid)}
                          for tag, delta in (doc.get("kpi_pending") or {}).items()}
    doc.update(clocks.summary(doc["clocks"]), schema_version=3)
    return doc


@upcaster(REQUESTS, 3)
def _request_before_slimming(doc: dict[str, Any]) -> dict[str, Any]:
    """Version 3 kept every timeline entry's payload (``data``) and its KPI contribution as a
    subdocument per counter. Version 4 (ADR 0604) names an entry's audit-log record instead
    (``record``: the payload is in its ``raw``) and keeps ``data`` only in an entry without one -- as
    a version-3 entry is, so it reads as it is -- and keeps the contribution grouped: the counters
    that get the same metrics together (``kpi.grouped``)."""
    doc["kpi_contribution"] = kpi.grouped(doc.get("kpi_contribution") or {})
    doc["schema_version"] = 4
    return doc


# ------------------------------------------------------------------------------------- the log


def split_block(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The records a stored log document holds, in their stored order: version 1 packed up to 256
    consecutive records into one *block* (``records``: rows of ``RECORD_FIELDS``); every other
    version holds one."""
    if "records" not in doc:
        return [doc]
    log = doc.get("log")
    return [{"log": log, "schema_version": 0, **dict(zip(RECORD_FIELDS, row, strict=False))}
            for row in unpack_json(doc["records"])]


@upcaster(RECORDS, 0)
def _record_before_versions(doc: dict[str, Any]) -> dict[str, Any]:
    """One record per document with the fields of today, before versions (and a block's rows)."""
    return {"log": doc.get("log"), **{f: doc.get(f) for f in RECORD_FIELDS}, "schema_version": 2}


# ------------------------------------------------------------------------------------- counters


@upcaster(COUNTERS, 0)
def _counter_before_versions(doc: dict[str, Any]) -> dict[str, Any]:
    """Counters were sharded by partition number (``kpi_counters_p3``, ``_id = <counter>|p3``) before
    one document per counter; a shard reads as its counter (the reader adds up the shards)."""
    cid = str(doc["_id"])
    if cid.count("|") == 3:
        doc["_id"] = cid.rsplit("|", 1)[0]
    doc["schema_version"] = 1
    return doc


def _unchanged(collection: str) -> None:
    """Documents written before versions, in the same shape as version 1."""

    @upcaster(collection, 0)
    def _same(doc: dict[str, Any]) -> dict[str, Any]:
        doc["schema_version"] = 1
        return doc


for _name in (DEADLINES, SERVICES, HEADS, CHECKPOINTS, CLAIMS):
    _unchanged(_name)


@upcaster(CLAIMS, 1)
def _claim_before_caused(doc: dict[str, Any]) -> dict[str, Any]:
    """Version 1 claims held only the decision (the event went out through the ``deadlines``
    document's outbox); version 2 keeps the escalation event itself (``_caused``) and when it was
    decided (``at``)."""
    doc.setdefault("at", None)
    doc["schema_version"] = 2
    return doc

