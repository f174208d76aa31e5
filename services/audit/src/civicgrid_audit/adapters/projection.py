"""The projections: per-request timeline, state and time-limit clocks, KPI counters, the catalogue.

``Projector.apply(deliveries)`` takes the events of one fetch -- one or more partitions of one or
more topics, each partition's in offset order (what the runtime's merging consumer hands a batch
handler, and what replay feeds it) -- and is idempotent:

1. append them to the audit log of their partition (tamper-evident trail);
2. fold new entries into each request document, one write per request for the whole batch (guarded
   by the document's version ``_v``: events of one request may still be folded side by side when a
   batch is retried partition by partition). The same single-document write keeps the request's
   time-limit clocks (``clocks``, with the indexed ``deadline`` and ``next_escalation_at``: the
   scanner's schedule and the overdue list read them; domain/clocks.py), its new KPI contribution
   (``kpi_contribution``) and the *difference* as a pending delta tagged with the delivery's
   partition and offset (``kpi_pending``);
3. hand the pending deltas to the ``CounterLedger`` (adapters/counting.py), which adds them to the
   counter documents every few seconds, exactly once; the request's next write drops those counted.

No lock: every write is guarded in its own filter (the runtime's one concurrency rule, ADR 0601).

One batch for all partitions of all topics makes each step one round trip for the whole batch (the
log appends one per partition, side by side) instead of one per partition, and folds a request's
events of several topics (received, assigned, offered ...) into one write of its document.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, InsertOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from civicgrid_audit.adapters.access import ACCESS_TYPES, StaffAccessIndex
from civicgrid_audit.adapters.auditlog import AuditLog, delivery_key
from civicgrid_audit.adapters.counting import CounterLedger, split_tag
from civicgrid_audit.adapters.documents import (
    COUNTERS,
    REQUESTS,
    SERVICES,
    request_summary,
    stamped,
    upcast,
)
from civicgrid_audit.domain import clocks, kpi, timeline
from civicgrid_contracts import topics
from civicgrid_contracts.calendar import WorkingCalendar
from civicgrid_runtime.bus import Delivery
from civicgrid_runtime.calendar import CalendarSource
from civicgrid_runtime.store import (
    BULK_CHUNK,
    POSITIONS,
    bulk_in_chunks,
    find_by_ids,
    insert_new,
)

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
        doc = stamped(COUNTERS, {"_id": cid, "dim": dim, "key": key, "day": day,
                                 "m": {k: v for k, v in sums[cid].items() if v}})
        if positions.get(cid):
            doc[POSITIONS] = dict(positions[cid])
        docs.append(doc)
    taken = await insert_new(counters, docs) if docs else set()
    ops = []
    for cid in [c for c in sums if c in existing] + [new[i] for i in sorted(taken)]:
        inc = {f"m.{k}": v for k, v in sums[cid].items() if v}
        if inc or positions.get(cid):
            update: dict[str, Any] = {"$set": stamped(COUNTERS, {
                f"{POSITIONS}.{p}": off for p, off in (positions.get(cid) or {}).items()})}
            if inc:
                update["$inc"] = inc
            ops.append(UpdateOne({"_id": cid}, update))
    if ops:
        await bulk_in_chunks(counters, ops)


async def ensure_request_indexes(db: AsyncDatabase) -> None:
    """The request documents' secondary indexes (MongoDB answers the lists and the scanner from them)."""
    requests = db[request_collection("")]
    # the supervision list of escalated open requests, most late first (by area prefix)
    await requests.create_index(
        [("open", ASCENDING), ("escalation_count", ASCENDING), ("late_since", ASCENDING)], name="escalated")
    # the overdue list and an operator's "open requests of a grid past their deadline"
    await requests.create_index([("area_code", ASCENDING), ("deadline", ASCENDING)], name="area_deadline")
    # the scanner's schedule: what falls due next
    await requests.create_index([("next_escalation_at", ASCENDING)], name="next_escalation")


async def read_requests(db: AsyncDatabase, request_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Request documents by id, from their collections, in today's shape (``upcast``)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for rid in request_ids:
        groups[request_collection(rid)].append(rid)
    found: dict[str, dict[str, Any]] = {}
    for cname, rids in groups.items():
        found.update({rid: upcast(cname, doc) for rid, doc in (await find_by_ids(db[cname], rids)).items()})
    return found

CATALOGUE_TYPE = "civicgrid.catalogue.service_defined"
#: deltas taken and not yet counted past which a batch counts them before it returns (memory bound)
MOST_WAITING = 50_000


def tag_of(d: Delivery) -> str:
    return f"{d.position_key}@{d.offset:012d}"


class PayloadsNotLoaded(ValueError):
    """A fold from the first entry was asked of entries whose payloads were not read from the log."""


def stored_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A timeline entry as stored: without its payload when its event's audit-log record is named
    (``record``: the record's ``_id``, whose ``raw`` holds the event), else with it."""
    return {k: v for k, v in entry.items() if k != "data"} if entry.get("record") else entry


def stored_document(doc: dict[str, Any]) -> dict[str, Any]:
    """The request document as written (plain: its timeline, state, clocks and KPI contribution as
    named fields, beside the summary the supervision lists and the scanner query). Its timeline
    names each event's audit-log record rather than repeating the payload the record holds, and its
    KPI contribution is kept grouped: every read of the document (each list on the embedded store
    reads them all) decodes about half as much (docs/adr/0604)."""
    return stamped(REQUESTS, {**doc, "timeline": [stored_entry(e) for e in doc["timeline"]]})


def payloads_needed(doc: dict[str, Any] | None, new_entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of ``doc`` whose payloads folding ``new_entries`` in takes: none when they all sort
    after the ones it holds (the fold goes on from its state), else those stored without one (the
    fold starts again from the first entry, an event having arrived out of order)."""
    if doc is None or timeline.comes_after(doc["timeline"], new_entries):
        return []
    return [e for e in doc["timeline"] if "data" not in e]


def with_payloads(entries: list[dict[str, Any]], payloads: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``entries`` with the payloads read from their log records (``record`` -> payload)."""
    out = []
    for e in entries:
        if "data" not in e:
            if e.get("record") not in payloads:
                raise PayloadsNotLoaded(f"the payload of event {e['id']} (log record {e.get('record')}) is not at hand")
            e = {**e, "data": payloads[e["record"]]}
        out.append(e)
    return out


async def with_needed_payloads(log: AuditLog, docs: dict[str, dict[str, Any]],
                               additions: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The documents of ``docs`` that fold their ``additions`` from the first entry again, with the
    payloads their timelines need read from the audit log (one read by ``_id`` for them all)."""
    needed = {rid: payloads_needed(doc, additions.get(rid) or []) for rid, doc in docs.items()}
    needed = {rid: entries for rid, entries in needed.items() if entries}
    if not needed:
        return {}
    loaded = await log.payloads([e["record"] for entries in needed.values() for e in entries])
    return {rid: {**docs[rid], "timeline": with_payloads(docs[rid]["timeline"], loaded)} for rid in needed}


def fold_document(rid: str, doc: dict[str, Any] | None, new_entries: list[dict[str, Any]],
                  calendar: WorkingCalendar, *, kp: dict[str, Any],
                  repeat_hours: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request document after ``new_entries`` (entries not in ``doc`` yet), and the KPI delta it
    makes (its new contribution minus the one ``doc`` recorded). ``kp``: the pending deltas to keep;
    ``repeat_hours``: the period between repeated escalations (None: each clock's own limit).
    New entries that sort after the ones ``doc`` holds are folded on from its state; one that sorts
    before them folds every entry again, which takes their payloads (``payloads_needed``)."""
    old = doc or {"_id": rid, "timeline": [], "_v": 0, "kpi_contribution": [], "clocks": []}
    entries = timeline.ordered(old["timeline"] + new_entries)
    if doc is not None and timeline.comes_after(old["timeline"], new_entries):
        state = timeline.fold(new_entries, start=copy.deepcopy(old["state"]))
    else:
        missing = [e["id"] for e in entries if "data" not in e]
        if missing:
            raise PayloadsNotLoaded(f"request {rid}: the payloads of {missing[:3]} ... are not at hand")
        state = timeline.fold(entries)
    contrib = kpi.contributions(state, calendar)
    delta = kpi.diff(contrib, kpi.expanded(old.get("kpi_contribution") or []))
    request_clocks = clocks.clocks_of(rid, state, calendar, repeat_hours=repeat_hours, before=old.get("clocks"))
    new_doc = {
        "_id": rid, **request_summary(state), **clocks.summary(request_clocks), "state": state, "timeline": entries,
        "clocks": request_clocks, "kpi_contribution": kpi.grouped(contrib), "kpi_pending": kp, "_v": old["_v"] + 1,
        "_w": uuid.uuid4().hex,
    }
    return new_doc, delta


def still_pending(pending: dict[str, Any], counted: Callable[[str], int]) -> dict[str, Any]:
    """The pending deltas (``<position>@<offset>`` -> delta) a request's next write keeps: all but
    those at or below the offset ``counted(position)`` says every delta of their position is counted."""
    def stale(tag: str) -> bool:
        position, offset = split_tag(tag)
        return offset <= counted(position)

    return {tag: delta for tag, delta in pending.items() if not stale(tag)}


def new_entries_of(doc: dict[str, Any] | None, deliveries: Sequence[Delivery],
                   payloads: dict[tuple[str, int, int], dict[str, Any]],
                   records: Mapping[tuple[str, int, int], str] | None = None) -> list[dict[str, Any]]:
    """Timeline entries of the deliveries that ``doc`` does not hold yet (by event id), each naming
    its audit-log record where ``records`` (``delivery_key`` -> record ``_id``) has it."""
    known = {e["id"] for e in doc["timeline"]} if doc else set()
    out = []
    for d in deliveries:
        if d.envelope.id not in known:
            known.add(d.envelope.id)
            entry = timeline.entry_from_envelope(d.envelope, topic=d.topic, partition=d.partition,
                                                 offset=d.offset, data=payloads.get(delivery_key(d)))
            record = (records or {}).get(delivery_key(d))
            if record:
                entry["record"] = record
            out.append(entry)
    return out


def payloads_of(deliveries: Sequence[Delivery]) -> dict[tuple[str, int, int], dict[str, Any]]:
    """``delivery_key`` -> payload in JSON mode: dumped once for both the log and the timeline."""
    return {delivery_key(d): d.envelope.data.model_dump(mode="json") for d in deliveries}


class Projector:
    def __init__(self, db: AsyncDatabase, log: AuditLog, calendar: CalendarSource, *,
                 repeat_hours: float | None = None) -> None:
        self.db = db
        self.log = log
        self.calendar = calendar
        self.repeat_hours = repeat_hours
        self.services = db[SERVICES]
        self.access = StaffAccessIndex(db)
        self.ledger = CounterLedger(db, log, lambda ids: read_requests(db, ids))
        #: told of every request written with a clock to escalate (the deadline scanner's schedule), if any
        self.on_deadline: Callable[[str, datetime], None] | None = None

    async def ensure_indexes(self) -> None:
        await self.log.ensure_indexes()
        await ensure_request_indexes(self.db)
        # the quarterly evaluation: a dimension's day counters of the quarter
        await self.db[COUNTERS].create_index([("dim", ASCENDING), ("day", ASCENDING)], name="dim_day")
        await self.access.ensure_indexes()

    # ------------------------------------------------------------------ entry point

    async def apply(self, deliveries: Sequence[Delivery]) -> None:
        """See the module docstring."""
        if not deliveries:
            return
        payloads = payloads_of(deliveries)
        by_partition: dict[str, list[Delivery]] = defaultdict(list)
        for d in deliveries:
            by_partition[d.position_key].append(d)
        records: dict[tuple[str, int, int], str] = {}  # where each event is in the log: its entry names it
        await asyncio.gather(*(self.log.append(ds, payloads=payloads, records=records)
                               for ds in by_partition.values()))
        for position, ds in by_partition.items():
            await self.ledger.ready(position, ds[0].offset)
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
        docs = await self._fold_requests(by_request, payloads, records) if by_request else {}
        for rid, ds in by_request.items():
            self.ledger.take({d.position_key for d in ds}, docs[rid])  # its deltas pending from any of them
        for position, ds in by_partition.items():
            self.ledger.folded(position, ds[-1].offset)
        if self.ledger.waiting > MOST_WAITING:
            await self.ledger.flush()
        if self.on_deadline:
            for rid, doc in docs.items():
                if doc.get("next_escalation_at") is not None:
                    self.on_deadline(rid, doc["next_escalation_at"])

    # ------------------------------------------------------------------ catalogue

    async def apply_catalogue(self, deliveries: list[Delivery]) -> None:
        """Keep each service's latest definition: an update guarded by the revision (an older one
        changes nothing), or the insert of a service not seen yet (its unique ``_id``: should another
        writer insert it first, the guarded update is tried again). No upsert: the embedded store's
        answer to an upsert that hits a duplicate key makes pymongo raise ``KeyError('nModified')``."""
        for d in deliveries:
            data = d.envelope.data.model_dump(mode="json")
            fields = stamped(SERVICES, {"revision": data["revision"], "definition": data})
            for _attempt in range(2):
                res = await self.services.update_one(
                    {"_id": data["service_code"], "revision": {"$lt": data["revision"]}}, {"$set": fields})
                if res.matched_count or await self.services.find_one({"_id": data["service_code"]}, {"_id": 1}):
                    break  # applied, or a newer (or the same) revision is there
                try:
                    await self.services.insert_one({"_id": data["service_code"], **fields})
                    break
                except DuplicateKeyError:
                    continue

    # ------------------------------------------------------------------ requests

    async def _fold_requests(self, by_request: dict[str, list[Delivery]],
                             payloads: dict[tuple[str, int, int], dict[str, Any]],
                             records: dict[tuple[str, int, int], str]) -> dict[str, dict[str, Any]]:
        """Fold the batch into request documents; returns the documents as written (or as found).
        A write drops the pending deltas the ledger counted: no separate write clears them."""
        pending = dict(by_request)
        result: dict[str, dict[str, Any]] = {}
        for _attempt in range(50):
            found = await read_requests(self.db, list(pending))
            additions = {rid: new_entries_of(found.get(rid), ds, payloads, records) for rid, ds in pending.items()}
            found.update(await with_needed_payloads(self.log, found, additions))
            ops: dict[str, list] = defaultdict(list)
            written = {}
            for rid, ds in pending.items():
                doc = found.get(rid)
                new_entries = additions[rid]
                if not new_entries:
                    result[rid] = doc
                    continue
                kp = still_pending((doc or {}).get("kpi_pending") or {}, self.ledger.counted)
                new_doc, delta = fold_document(rid, doc, new_entries, self.calendar.calendar, kp=kp,
                                               repeat_hours=self.repeat_hours)
                if delta:
                    new_doc["kpi_pending"][tag_of(ds[-1])] = delta
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
                for i in range(0, len(cops), BULK_CHUNK):  # bounded round trips: a batch is up to 10,000 events
                    chunk = cops[i:i + BULK_CHUNK]
                    try:
                        res = await self.db[cname].bulk_write(chunk, ordered=False)
                        conflict |= res.matched_count + res.inserted_count < len(chunk)
                    except BulkWriteError:
                        conflict = True
                if conflict:  # someone else wrote some of these documents: find out which, redo those
                    mine = [rid for rid in written if request_collection(rid) == cname]
                    tokens = {i: d.get("_w") for i, d in (await find_by_ids(self.db[cname], mine, {"_w": 1})).items()}
                    lost |= {rid for rid in mine if tokens.get(rid) != written[rid][0]["_w"]}
            for rid, (nd, _old) in written.items():
                if rid not in lost:
                    result[rid] = nd
            pending = {rid: pending[rid] for rid in lost}
            if not pending:
                return result
        raise RuntimeError(f"request documents kept changing under us: {sorted(pending)[:5]}")
