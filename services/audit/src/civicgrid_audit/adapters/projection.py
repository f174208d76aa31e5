"""The projections: per-request timeline + state, KPI counters, deadlines, the catalogue.

``Projector.apply(deliveries)`` takes the events of one topic -- one or more of its partitions, each
partition's in offset order (what the runtime's merging consumer hands a batch handler, and what
replay feeds it) -- and is idempotent:

1. append them to the audit log of their partition (tamper-evident trail);
2. fold new entries into each request document (optimistic concurrency on ``_v``: events of one
   request arrive on the same partition number of several topics); the same single-document write
   stores the request's new KPI contribution (``_kc``) and the *difference* as a pending delta
   tagged with the delivery's partition and offset (``_kp``);
3. apply pending deltas of each partition to the counter documents (one per counter, shared by all
   partitions) with ``$inc``, skipping those at or below the counter's recorded position for that
   partition (``_pos``, read first; a partition has a single writer): a delta is applied exactly
   once even when a crash makes the batch come again; the request's next write from that partition
   drops them;
4. upsert the request's time-limit clocks into ``deadlines`` (projection-owned fields only; the
   escalation step and next due time belong to the scanner).

One batch for all partitions of a topic makes each step one round trip for the whole batch (the
log appends one per partition, side by side) instead of one per partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DeleteOne, InsertOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from civicgrid_audit.adapters.access import ACCESS_TYPES, StaffAccessIndex
from civicgrid_audit.adapters.auditlog import AuditLog
from civicgrid_audit.domain import kpi, timeline
from civicgrid_contracts import topics
from civicgrid_contracts.calendar import WorkingCalendar
from civicgrid_contracts.values import Calendar
from civicgrid_runtime.bus import Delivery
from civicgrid_runtime.calendar import CalendarSource
from civicgrid_runtime.store import (
    PENDING,
    POSITIONS,
    bulk_in_chunks,
    find_by_ids,
    insert_new,
    pack_json,
    unpack_json,
)

REQUESTS, COUNTERS, DEADLINES, SERVICES = "requests", "kpi_counters", "deadlines", "services"
#: Request documents are spread over this many collections (``requests_00`` ...). It was 64 while
#: the local store's updates scanned their whole collection; with its ``_id`` index used
#: (deploy/local/ferretdb, patch 0001) one collection is best: a batch is one read and one bulk
#: write instead of one per bucket it touches. Changing it moves where request documents are looked
#: for: reset or replay.
REQUEST_BUCKETS = 1


def request_collection(request_id: str) -> str:
    return f"{REQUESTS}_{zlib.crc32(request_id.encode()) % REQUEST_BUCKETS:02d}"


def legacy_counter_collection(shard: int) -> str:
    """Counters were sharded by partition number until one document per counter (ids ``<counter>|p3``
    in ``kpi_counters_p3``); the queries still add up what such a database holds."""
    return f"{COUNTERS}_p{shard}"


async def add_to_counters(counters: AsyncCollection, sums: dict[str, dict[str, int]], *, existing: set[str],
                          positions: dict[str, dict[str, int]] | None = None) -> None:
    """Add ``sums`` (counter id -> metric -> count) to the counter documents, one per counter: inserted
    where not in ``existing``, ``$inc`` where they are, or where another writer inserted first (the
    counters of one day are shared by every partition, and ``$inc`` on one document is atomic).
    ``positions``: counter id -> {position: offset} to record with the counts (the live path's guard
    against counting a redelivered batch twice)."""
    positions = positions or {}
    new = [cid for cid in sums if cid not in existing]
    docs = []
    for cid in new:
        dim, key, day = kpi.split_counter_id(cid)
        doc = {"_id": cid, "dim": dim, "key": key, "day": day, "m": {k: v for k, v in sums[cid].items() if v}}
        if positions.get(cid):
            doc[POSITIONS] = dict(positions[cid])
        docs.append(doc)
    taken = await insert_new(counters, docs) if docs else set()
    ops = []
    for cid in [c for c in sums if c in existing] + [new[i] for i in sorted(taken)]:
        update: dict[str, Any] = {}
        inc = {f"m.{k}": v for k, v in sums[cid].items() if v}
        if inc:
            update["$inc"] = inc
        if positions.get(cid):
            update["$set"] = {f"{POSITIONS}.{p}": off for p, off in positions[cid].items()}
        if update:
            ops.append(UpdateOne({"_id": cid}, update))
    if ops:
        await bulk_in_chunks(counters, ops)


async def read_requests(db: AsyncDatabase, request_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Request documents by id, from their collections, unpacked (``loaded_document``)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for rid in request_ids:
        groups[request_collection(rid)].append(rid)
    found: dict[str, dict[str, Any]] = {}
    for cname, rids in groups.items():
        found.update({rid: loaded_document(doc) for rid, doc in (await find_by_ids(db[cname], rids)).items()})
    return found

CATALOGUE_TYPE = "civicgrid.catalogue.service_defined"
FAR_FUTURE = datetime(2999, 1, 1, tzinfo=UTC)


def tag_of(d: Delivery) -> str:
    return f"{d.position_key}@{d.offset:012d}"


def clock_kind(deadline: dict[str, Any]) -> Calendar:
    """Whether a clock counts working hours or wall-clock hours."""
    return "business" if deadline.get("business", True) else "calendar"


def deadline_fields(request_id: str, state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Projection-owned fields of each clock of a request."""
    out = {}
    tl = state.get("time_limits") or {}
    seen: dict[tuple[str, str | None], int] = defaultdict(int)
    for e in state["escalations"]:
        seen[(e["clock"], e.get("department"))] = max(seen[(e["clock"], e.get("department"))], int(e["step"]))
    for c in timeline.clocks(state):
        if c["clock"] == "report_back":
            hours = tl.get("report_back_hours") or tl.get("resolution_hours")
        else:
            hours = tl.get(f"{c['clock']}_hours")
        out[timeline.clock_id(request_id, c)] = {
            "request_id": request_id, "clock": c["clock"], "department": c["department"],
            "dispatch_id": c["dispatch_id"], "base_due": timeline.parse_time(c["base_due"]), "active": c["active"],
            "area_code": state.get("area_code") or "", "level": state.get("level") or "grid",
            "seen": seen[(c["clock"], c["department"])], "period_hours": hours,
            "business": tl.get("calendar", "business") == "business",
        }
    return out


#: a request document's timeline and KPI contribution, stored as one compressed JSON blob: a fraction
#: of the bytes of the plain subdocuments, and the store's cost of a write grows with its bytes
#: (FerretDB re-encodes every field); only the filtered fields stay plain, for the queries
BODY = "_body"
#: the request's state, packed on its own (the supervision lists read it without the timeline): no
#: query filters inside it, and its forty-odd fields had cost the store 180 us a document written
#: against 70 packed, measured
STATE = "_state"


def stored_document(doc: dict[str, Any]) -> dict[str, Any]:
    """The request document as written: ``timeline`` and ``_kc`` packed into ``BODY``, ``state``
    into ``STATE``."""
    out = {k: v for k, v in doc.items() if k not in ("timeline", "_kc", "_prev_state", "state")}
    out[BODY] = pack_json({"timeline": doc["timeline"], "_kc": doc["_kc"]})
    out[STATE] = pack_json(doc["state"])
    return out


def loaded_document(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """The request document as read, with ``timeline``, ``_kc`` and ``state`` unpacked (in place);
    documents written before they were packed are read as they are."""
    if doc is not None:
        if BODY in doc:
            doc.update(unpack_json(doc.pop(BODY)))
        if STATE in doc:
            doc["state"] = unpack_json(doc.pop(STATE))
    return doc


def fold_document(rid: str, doc: dict[str, Any] | None, new_entries: list[dict[str, Any]],
                  calendar: WorkingCalendar, *, kp: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request document after ``new_entries`` (entries not in ``doc`` yet), and the KPI delta it
    makes (its new contribution minus the one ``doc`` recorded). ``kp``: the pending deltas to keep."""
    old = doc or {"_id": rid, "timeline": [], "_v": 0, "_kc": {}}
    entries = timeline.ordered(old["timeline"] + new_entries)
    state = timeline.fold(entries)
    contrib = kpi.contributions(state, calendar)
    delta = kpi.diff(contrib, old.get("_kc") or {})
    new_doc = {
        "_id": rid, "timeline": entries, "state": state, "status": state["status"],
        "area_code": state.get("area_code") or "",
        "open": state["status"] not in ("resolved", "closed", "rejected", "merged"),
        "escalation_count": len(state["escalations"]), "_kc": contrib, "_kp": kp,
        "_v": old["_v"] + 1, "_w": uuid.uuid4().hex,
    }
    return new_doc, delta


def new_entries_of(doc: dict[str, Any] | None, deliveries: Sequence[Delivery],
                   payloads: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Timeline entries of the deliveries that ``doc`` does not hold yet (by event id)."""
    known = {e["id"] for e in doc["timeline"]} if doc else set()
    out = []
    for d in deliveries:
        if d.envelope.id not in known:
            known.add(d.envelope.id)
            out.append(timeline.entry_from_envelope(d.envelope, topic=d.topic, partition=d.partition,
                                                    offset=d.offset, data=payloads.get(d.envelope.id)))
    return out


def payloads_of(deliveries: Sequence[Delivery]) -> dict[str, dict[str, Any]]:
    """event id -> payload in JSON mode: dumped once for both the log and the timeline."""
    return {d.envelope.id: d.envelope.data.model_dump(mode="json") for d in deliveries}


class Projector:
    def __init__(self, db: AsyncDatabase, log: AuditLog, calendar: CalendarSource) -> None:
        self.db = db
        self.log = log
        self.calendar = calendar
        self.deadlines = db[DEADLINES]
        self.services = db[SERVICES]
        self.access = StaffAccessIndex(db)
        self._locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        #: told of every running clock written (the deadline scanner's schedule), if any
        self.on_deadline: Callable[[str, datetime], None] | None = None

    async def ensure_indexes(self) -> None:
        await self.log.ensure_indexes()
        await self.access.ensure_indexes()
        await self.deadlines.create_index([("active", ASCENDING), ("due_at", ASCENDING)], name="due")
        await self.deadlines.create_index([("area_code", ASCENDING), ("base_due", ASCENDING)], name="area_due")
        await self.deadlines.create_index([("request_id", ASCENDING)], name="request")

    # ------------------------------------------------------------------ entry point

    async def apply(self, deliveries: Sequence[Delivery]) -> None:
        """See the module docstring. Topic-partitions with the same *number* carry the same requests
        (co-partitioned topics), so they are applied one at a time in this process: FerretDB v1 does not
        apply update filters atomically, so the ``_v`` check alone cannot stop two concurrent writers.
        A batch holds the locks of all its partition numbers, taken in order."""
        if not deliveries:
            return
        async with contextlib.AsyncExitStack() as held:
            for part in sorted({d.partition for d in deliveries}):
                await held.enter_async_context(self._locks[part])
            await self._apply(deliveries)

    async def _apply(self, deliveries: Sequence[Delivery]) -> None:
        payloads = payloads_of(deliveries)
        by_partition: dict[int, list[Delivery]] = defaultdict(list)
        for d in deliveries:
            by_partition[d.partition].append(d)
        await asyncio.gather(*(self.log.append(ds, payloads=payloads) for ds in by_partition.values()))
        catalogue = [d for d in deliveries if d.envelope.type == CATALOGUE_TYPE]
        if catalogue:
            await self.apply_catalogue(catalogue)
        access = [d for d in deliveries if d.envelope.type in ACCESS_TYPES]
        if access:
            await self.access.apply(access)
        by_request: dict[str, list[Delivery]] = defaultdict(list)
        for d in deliveries:
            if topics.is_request_event(d.envelope.type):  # the catalogue's, calendar's and staff access's go to the log only
                by_request[d.envelope.subject].append(d)
        if not by_request:
            return
        first_offsets = {ds[0].position_key: ds[0].offset for ds in by_partition.values()}
        docs = await self._fold_requests(by_request, payloads, first_offsets=first_offsets)
        by_position: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for rid, ds in by_request.items():
            by_position[ds[0].position_key][rid] = docs[rid]
        await self._apply_counters(by_position)
        await self.write_clocks(docs)

    # ------------------------------------------------------------------ catalogue

    async def apply_catalogue(self, deliveries: list[Delivery]) -> None:
        ops = []
        for d in deliveries:
            data = d.envelope.data.model_dump(mode="json")
            ops.append(UpdateOne({"_id": data["service_code"], "revision": {"$lt": data["revision"]}},
                                 {"$set": {"revision": data["revision"], "definition": data}}, upsert=True))
        for op in ops:  # last revision wins; an older one hits the unique _id and is ignored
            try:
                await self.services.bulk_write([op])
            except BulkWriteError:
                pass

    # ------------------------------------------------------------------ requests

    async def _fold_requests(self, by_request: dict[str, list[Delivery]], payloads: dict[str, dict[str, Any]], *,
                             first_offsets: dict[str, int]) -> dict[str, dict[str, Any]]:
        """Fold the batch into request documents; returns the documents as written (or as found).

        ``first_offsets``: position (topic-partition) -> the batch's first offset there. A pending
        delta of a request's position from before that offset has reached the counters (its batch
        finished before this one was fetched; a batch that failed comes again from its own start),
        so the write drops it: no separate write clears deltas."""
        pending = dict(by_request)
        result: dict[str, dict[str, Any]] = {}
        for _attempt in range(50):
            found = await read_requests(self.db, list(pending))
            ops: dict[str, list] = defaultdict(list)
            written = {}
            for rid, ds in pending.items():
                doc = found.get(rid)
                new_entries = new_entries_of(doc, ds, payloads)
                if not new_entries:
                    result[rid] = doc
                    continue
                position = ds[0].position_key
                stale_before = f"{position}@{first_offsets[position]:012d}"
                kp = {t: v for t, v in ((doc or {}).get("_kp") or {}).items()
                      if not (t.startswith(position + "@") and t < stale_before)}
                new_doc, delta = fold_document(rid, doc, new_entries, self.calendar.calendar, kp=kp)
                if delta:
                    new_doc["_kp"][tag_of(ds[-1])] = delta
                doc = doc or {"_id": rid, "timeline": [], "_v": 0}
                written[rid] = (new_doc, doc)
                if doc["_v"] == 0:
                    ops[request_collection(rid)].append(InsertOne(stored_document(new_doc)))
                else:
                    ops[request_collection(rid)].append(ReplaceOne({"_id": rid, "_v": doc["_v"]},
                                                                   stored_document(new_doc)))
            lost: set[str] = set()
            for cname, cops in ops.items():
                conflict = False
                try:
                    res = await self.db[cname].bulk_write(cops, ordered=False)
                    conflict = res.matched_count + res.inserted_count < len(cops)
                except BulkWriteError:
                    conflict = True
                if conflict:  # someone else wrote some of these documents: find out which, redo those
                    mine = [rid for rid in written if request_collection(rid) == cname]
                    tokens = {d["_id"]: d.get("_w") async for d in self.db[cname].find(
                        {"_id": {"$in": mine}}, {"_w": 1})}
                    lost |= {rid for rid in mine if tokens.get(rid) != written[rid][0]["_w"]}
            for rid, (nd, old) in written.items():
                if rid not in lost:
                    nd["_prev_state"] = old.get("state")
                    result[rid] = nd
            pending = {rid: pending[rid] for rid in lost}
            if not pending:
                return result
        raise RuntimeError(f"request documents kept changing under us: {sorted(pending)[:5]}")

    # ------------------------------------------------------------------ KPI counters

    async def _apply_counters(self, by_position: dict[str, dict[str, dict[str, Any]]]) -> None:
        """Apply the batch's pending deltas (position -> request id -> document written) to the counter
        documents, one per counter shared by every partition, in one read and one bulk write. Each
        counter records, per position, the offset of the last delta it took from there (a position
        has one writer: the holder of its partition), so a delta at or below it is not counted twice."""
        deltas: list[tuple[str, int, dict[str, dict[str, int]]]] = []
        for position, docs in by_position.items():
            prefix = position + "@"
            for doc in docs.values():
                for tag, delta in (doc.get("_kp") or {}).items():
                    if tag.startswith(prefix):
                        deltas.append((position, int(tag[len(prefix):]), delta))
        if not deltas:
            return
        counters = self.db[COUNTERS]
        cids = {cid for _, _, delta in deltas for cid in delta}
        current = {cid: c.get(POSITIONS) or {} for cid, c in (await find_by_ids(
            counters, sorted(cids), {f"{POSITIONS}.{p}": 1 for p in by_position})).items()}
        sums: dict[str, dict[str, int]] = defaultdict(dict)
        top: dict[str, dict[str, int]] = defaultdict(dict)
        for position, off, delta in deltas:
            for cid, m in delta.items():
                if off > current.get(cid, {}).get(position, -1):
                    kpi.add_into(sums[cid], m)
                    top[cid][position] = max(top[cid].get(position, -1), off)
        await add_to_counters(counters, sums, existing=set(current), positions=top)

    # ------------------------------------------------------------------ deadlines

    async def write_clocks(self, docs: dict[str, dict[str, Any]]) -> None:
        """Keep ``deadlines`` to the *running* clocks (the scanner's schedule and the overdue list): upsert
        changed running clocks, delete the ones that stopped (a request's past clocks stay in its state).
        A redelivered batch (no change) rewrites all clocks of its requests, in case a crash came between
        the request write and this one. Writers of one request's clocks are serialized by the partition
        lock in ``apply`` (co-partitioned topics)."""
        ops: list[UpdateOne | DeleteOne] = []
        running: list[tuple[str, datetime]] = []
        for rid, doc in docs.items():
            if not doc.get("state"):
                continue
            new = deadline_fields(rid, doc["state"])
            known = "_prev_state" in doc
            old = deadline_fields(rid, doc["_prev_state"]) if known and doc["_prev_state"] else {}
            for did, fields in new.items():
                if old.get(did) == fields:
                    continue
                if fields["active"]:
                    ops.append(UpdateOne({"_id": did}, {"$set": {**fields, "_rv": doc["_v"]},
                                                        "$setOnInsert": {"step": 1, "due_at": fields["base_due"],
                                                                         "esc_level": None}}, upsert=True))
                    running.append((did, fields["base_due"]))
                elif not known or old.get(did, {}).get("active"):
                    # stopped: gone from the schedule, unless an escalation of it still waits in its
                    # outbox (the scanner's write and publish); that one stays, inactive, for the relay
                    ops.append(DeleteOne({"_id": did, PENDING: {"$exists": False}}))
        if ops:
            await self.deadlines.bulk_write(ops, ordered=False)
            if self.on_deadline:
                for did, base_due in running:
                    self.on_deadline(did, base_due)
