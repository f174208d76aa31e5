"""The document store: PyMongo's native async client, idempotency guards and the outbox.

PyMongo's ``AsyncMongoClient`` is the maintained successor of Motor (deprecated in May 2025):
one client per event loop, ``await client.close()``.

The store (FerretDB here, MongoDB in a city) has no multi-document transactions, so "write state
and the events it causes atomically" means **one document**:

- the aggregate document carries its pending outgoing events in ``_outbox`` (a sub-document keyed
  by an ordered key, because FerretDB v1 has no ``$pull`` with conditions) and a flag
  ``_outbox_pending`` (indexed) while any is there;
- the same single-document update records what it applied: either the event id in ``_applied``
  (``{"_applied": {"$ne": id}}`` guards the update) or the source partition offset in ``_pos``;
- the relay publishes pending events (right after the write, and by a sweep after a crash), then
  ``$unset``s them. Publishing twice is harmless: event ids are deterministic and readers are
  idempotent.

A consumer's handler writing new documents needs no outbox to clear (``OutboxRelay.insert_caused``):
each document keeps the events it caused, and the cause, redelivered until the handler returns,
is the outbox. (An earlier version wrote a batch *intent* document before such inserts; the sweep
still publishes what one left behind.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import cramjam
import orjson
from bson import Binary
from pymongo import AsyncMongoClient, DeleteOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from civicgrid_contracts import Envelope
from civicgrid_runtime.bus import Delivery, EventPublisher
from civicgrid_runtime.logging import get_logger
from civicgrid_runtime.metrics import OUTBOX_PENDING
from civicgrid_runtime.tracing import stamped

log = get_logger("civicgrid.store")

OUTBOX = "_outbox"
PENDING = "_outbox_pending"
APPLIED = "_applied"
POSITIONS = "_pos"


#: the first bytes of a zstd frame (blobs packed before LZ4; an LZ4 block starts with its length)
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def pack_json(value: Any) -> Binary:
    """``value`` (JSON values and datetimes) as one LZ4-compressed JSON blob. For the parts of a
    document no query filters on: the local store's cost of a write grows with the document's bytes
    and fields (FerretDB re-encodes each, with a type header), and a blob is one field.
    LZ4 rather than zstd: a third more bytes, but 3 us to pack a request's timeline against 25 (zstd
    sets up a context per call) and 1 to unpack against 16, measured."""
    return Binary(bytes(cramjam.lz4.compress_block(orjson.dumps(value))))


def unpack_json(blob: bytes) -> Any:
    """The value of ``pack_json`` (datetimes come back as ISO 8601 strings); zstd blobs too."""
    if blob[:4] == _ZSTD_MAGIC:
        return orjson.loads(bytes(cramjam.zstd.decompress(blob)))
    return orjson.loads(bytes(cramjam.lz4.decompress_block(blob)))


def connect(url: str, *, app_name: str) -> AsyncMongoClient:
    """A client with timeouts that fail fast enough for health checks and retries, and the
    platform-wide TLS and authentication settings (``CIVICGRID_MONGODB_*``). Retryable writes are
    the driver's default and stay on (MongoDB retries a write once across a failover); a store
    without them (FerretDB v1) says so in its connection string (``?retryWrites=false``)."""
    from civicgrid_runtime.settings import StoreTransportSettings
    from civicgrid_runtime.storeprofile import listeners

    return AsyncMongoClient(
        url, appname=app_name, tz_aware=True, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000,
        event_listeners=listeners(app_name), **StoreTransportSettings().client_options(),
    )


async def ping(db: AsyncDatabase) -> bool:
    try:
        await db.command("ping")
        return True
    except Exception:  # noqa: BLE001 - any failure means not ready
        return False


# --------------------------------------------------------------------------- update helpers


def merge_updates(*updates: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Combine update documents operator by operator (``$set`` with ``$set`` ...)."""
    out: dict[str, dict[str, Any]] = {}
    for u in updates:
        for op, fields in u.items():
            out.setdefault(op, {}).update(fields)
    return out


def not_applied(event_id: str) -> dict[str, Any]:
    """Filter fragment: the document has not applied this event yet."""
    return {APPLIED: {"$ne": event_id}}


def mark_applied(event_id: str) -> dict[str, dict[str, Any]]:
    """Update fragment recording the event id (use on request-scoped documents: a request's
    lifetime bounds the list)."""
    return {"$push": {APPLIED: event_id}}


def position_guard(d: Delivery) -> dict[str, Any]:
    """Filter fragment: this partition's offset is newer than any this document applied. Exact and
    O(partitions) in space, for documents many requests touch. Events re-published by an outbox
    get new offsets, so combine with an event-id check where that can happen."""
    f = f"{POSITIONS}.{d.position_key}"
    return {"$or": [{f: {"$exists": False}}, {f: {"$lt": d.offset}}]}


def mark_position(d: Delivery) -> dict[str, dict[str, Any]]:
    return {"$set": {f"{POSITIONS}.{d.position_key}": d.offset}}


def _outbox_key(env: Envelope, index: int) -> str:
    # ordered by time of writing, then position in the write; unique by event id
    return f"{time.time_ns():020d}{index:04d}_{env.id}"


def outbox_entries(events: Sequence[Envelope]) -> dict[str, dict[str, Any]]:
    """Outbox entries (ordered key -> stored event, with the trace context of where it was created,
    which the relay's publish continues) for one write."""
    return {_outbox_key(e, i): stamped(e).to_document(with_trace=True) for i, e in enumerate(events)}


def outbox_push(events: Sequence[Envelope] | dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Update fragment adding events (or prepared ``outbox_entries``) to the document's outbox."""
    entries = events if isinstance(events, dict) else outbox_entries(events)
    if not entries:
        return {}
    fields: dict[str, Any] = {f"{OUTBOX}.{k}": v for k, v in entries.items()}
    fields[PENDING] = True
    return {"$set": fields}


def pending_events(doc: dict[str, Any]) -> list[tuple[str, Envelope]]:
    box = doc.get(OUTBOX) or {}
    return [(k, Envelope.from_document(box[k])) for k in sorted(box)]


MARKERS = "_outbox_markers"
#: batch intents an earlier version wrote before inserting new documents, and the field naming a
#: document's intent (intake's markers use the same field for their token)
INTENTS, INTENT_FIELD = "_outbox_batches", "_ob"
#: the events a document written by ``OutboxRelay.insert_caused`` caused (a list of plain event
#: documents; documents written before were given one packed blob, still read)
CAUSED = "_caused"
#: operations per bulk write round trip (bounded so one batch cannot hold the store for long)
BULK_CHUNK = 500
#: seconds ``insert_with_events`` waits before publishing, gathering concurrent inserts into one batch
PUBLISH_LINGER = 0.002


async def find_by_ids(collection: AsyncCollection, ids: Iterable[Any],
                      projection: dict[str, Any] | None = None) -> dict[Any, dict[str, Any]]:
    """Documents by ``_id``, ``BULK_CHUNK`` ids per read: the local store answers an ``$in`` of at
    most that many from its index and scans the whole collection for a longer one."""
    unique = list(dict.fromkeys(ids))
    out: dict[Any, dict[str, Any]] = {}
    for i in range(0, len(unique), BULK_CHUNK):
        async for d in collection.find({"_id": {"$in": unique[i:i + BULK_CHUNK]}}, projection):
            out[d["_id"]] = d
    return out


async def insert_new(collection: AsyncCollection, docs: list[dict[str, Any]]) -> set[int]:
    """Insert documents, ``BULK_CHUNK`` per write; returns the indexes whose ``_id`` existed."""
    from pymongo.errors import BulkWriteError

    duplicate: set[int] = set()
    for start in range(0, len(docs), BULK_CHUNK):
        try:
            await collection.insert_many(docs[start:start + BULK_CHUNK], ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            duplicate |= {start + e["index"] for e in errors}
    return duplicate


def caused_events(docs: Iterable[dict[str, Any]]) -> list[Envelope]:
    """The events ``OutboxRelay.insert_caused`` kept in these documents."""
    return [Envelope.from_document(e) for d in docs if d.get(CAUSED)
            for e in (unpack_json(d[CAUSED]) if isinstance(d[CAUSED], bytes) else d[CAUSED])]


def intent_items(intent: dict[str, Any]) -> list[dict[str, Any]]:
    """A batch intent's ``[{"doc": id, "events": [event document, ...]}, ...]`` (packed, or in
    plain fields as intents written before packing were)."""
    return unpack_json(intent["packed"]) if "packed" in intent else intent["items"]


async def bulk_in_chunks(collection: AsyncCollection, ops: list) -> None:
    for i in range(0, len(ops), BULK_CHUNK):
        await collection.bulk_write(ops[i:i + BULK_CHUNK], ordered=False)


# Concurrent writes have ONE rule (docs/adr/0601): every write that can race names its guard in its
# own filter -- a version (``_v``), an applied-event or position check, a claim's holder -- and the
# store applies the filter and the change to one document atomically (MongoDB does; the embedded
# store does with its patch 0003, tested in tests/runtime/test_store_guarantees.py); creating a
# document races on its unique ``_id`` (a claim). No in-process locks: they never held across
# replicas anyway.


# --------------------------------------------------------------------------- relay


class OutboxRelay:
    """Publishes events waiting in documents' outboxes, then removes them.

    Finding pending documents must not scan the aggregate collections (FerretDB pushes down little
    more than ``_id`` equality, so any other filter reads the whole collection). So every write
    that enqueues events first records a small *marker* (``_outbox_markers``, one per write, keyed
    by collection, document id and the write's first outbox key). The fast path publishes right
    after the write and deletes the marker; ``sweep`` reads only the markers -- a collection as
    small as the work in flight -- and republishes what a crash left behind. A marker whose write
    never landed is dropped after ``grace`` seconds. At start-up, ``sweep_all`` also scans each
    collection once for pending documents written without a marker.
    """

    def __init__(self, publisher: EventPublisher, collections: Iterable[AsyncCollection], *,
                 interval: float = 1.0, grace: float = 10.0) -> None:
        self._publisher = publisher
        self._collections = {c.full_name: c for c in collections}
        self._interval = interval
        self._grace = grace
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        #: collection name -> awaited with the documents a sweep found pending, before their publish
        #: (finishes what a crashed writer left half-done besides the publish, e.g. a link)
        self._recover: dict[str, Callable[[list[dict[str, Any]]], Awaitable[None]]] = {}
        #: documents written with ``insert_with_events``, published by ``_publish_loop``
        self._soon: asyncio.Queue[tuple[AsyncCollection, dict[str, Any], dict[str, Any] | None, str | None]] = \
            asyncio.Queue()
        self._publishing: asyncio.Task | None = None

    @property
    def collections(self) -> list[AsyncCollection]:
        return list(self._collections.values())

    def _markers(self, collection: AsyncCollection) -> AsyncCollection:
        return collection.database[MARKERS]

    @staticmethod
    def _marker_id(collection: AsyncCollection, doc_id: Any, key: str) -> str:
        return f"{collection.name}|{doc_id}|{key}"

    @staticmethod
    async def ensure_indexes(collection: AsyncCollection) -> None:
        await collection.create_index([(PENDING, 1)], name="outbox_pending")

    async def mark(self, collection: AsyncCollection, writes: Iterable[tuple[Any, dict[str, Any]]]) -> None:
        """Record, before the write, that documents are about to get outbox entries."""
        from datetime import UTC, datetime

        now = datetime.now(UTC)
        docs = [{"_id": self._marker_id(collection, doc_id, min(entries)), "schema_version": 1, "col": collection.name,
                 "doc": doc_id, "key": min(entries), "at": now} for doc_id, entries in writes if entries]
        if docs:
            from pymongo.errors import BulkWriteError

            try:
                await self._markers(collection).insert_many(docs, ordered=False)
            except BulkWriteError as exc:  # the same write marked twice (a retry): fine
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise

    def recover_with(self, collection: AsyncCollection,
                     hook: Callable[[list[dict[str, Any]]], Awaitable[None]]) -> None:
        """Run ``hook`` on the documents (``_id`` and ``_outbox``) a sweep finds pending in
        ``collection``, before publishing them. Must be idempotent: a redelivery runs it too."""
        self._recover[collection.full_name] = hook

    async def _recovered(self, collection: AsyncCollection, docs: list[dict[str, Any]]) -> None:
        hook = self._recover.get(collection.full_name)
        if hook is not None and docs:
            await hook(docs)

    async def flush_documents(self, collection: AsyncCollection, docs: Iterable[dict[str, Any]], *,
                              unchanged: dict[str, Any] | None = None) -> int:
        """Publish the outbox of documents already read (e.g. returned by find_one_and_update).

        ``unchanged``: a filter fragment true while nothing else wrote the documents since (e.g.
        ``{"version": 1}`` after an insert); where it holds, one update clears the outbox and its
        flag, instead of two."""
        work = [(doc["_id"], pending_events(doc)) for doc in docs if doc and doc.get(OUTBOX)]
        if not work:
            return 0
        await self._publisher.publish_many([env for _, evs in work for _, env in evs])
        if unchanged is not None:  # guarded by the version in the filter: the one concurrency rule
            res = await collection.bulk_write([
                UpdateOne({"_id": i, **unchanged}, {"$unset": {OUTBOX: "", PENDING: ""}}) for i, _ in work],
                ordered=False)
            if res.modified_count == len(work):
                return sum(len(evs) for _, evs in work)
        # remove exactly the published entries, then clear the flag only where nothing new arrived
        # meanwhile (the filter checks emptiness); a few round trips per batch, not per document
        await bulk_in_chunks(collection, [
            UpdateOne({"_id": i}, {"$unset": {f"{OUTBOX}.{k}": "" for k, _ in evs}}) for i, evs in work])
        await bulk_in_chunks(collection, [UpdateOne({"_id": i, OUTBOX: {}}, {"$unset": {PENDING: ""}})
                                          for i, _ in work])
        await bulk_in_chunks(self._markers(collection), [
            DeleteOne({"_id": self._marker_id(collection, i, k)}) for i, evs in work for k, _ in evs])
        return sum(len(evs) for _, evs in work)

    async def flush(self, collection: AsyncCollection, ids: Iterable[Any]) -> int:
        """Publish what is pending in these documents (read by ``_id``, which the store indexes)."""
        docs = await asyncio.gather(*(collection.find_one({"_id": i}, {OUTBOX: 1}) for i in ids))
        pending = [d for d in docs if d and d.get(OUTBOX)]
        await self._recovered(collection, pending)
        return await self.flush_documents(collection, pending)

    async def insert_with_events(self, collection: AsyncCollection, doc: dict[str, Any],
                                 events: Sequence[Envelope], *, unchanged: dict[str, Any] | None = None,
                                 crash_point_name: str | None = None) -> None:
        """Insert a new document with the events its creation causes in its own outbox (one store
        write; raises ``DuplicateKeyError`` if the ``_id`` exists), then publish them from the
        relay's task, soon after the caller has answered.

        No marker: the document is its own record of the pending events. A crash before the
        publish leaves it flagged ``_outbox_pending``; ``sweep_all`` finds it at the next start
        (on MongoDB through the flag's index). A publish that fails while the process lives marks
        the document then, so the periodic ``sweep`` retries it. ``unchanged`` as in
        ``flush_documents``."""
        entries = outbox_entries(events)
        if entries:
            doc[OUTBOX] = entries
            doc[PENDING] = True
        await collection.insert_one(doc)
        if entries:
            self._soon.put_nowait((collection, {"_id": doc["_id"], OUTBOX: entries}, unchanged, crash_point_name))
            if self._publishing is None or self._publishing.done():
                self._publishing = asyncio.create_task(self._publish_loop(), name="outbox-publish")

    async def _publish_soon_batch(self, batch: list[tuple[AsyncCollection, dict[str, Any],
                                                          dict[str, Any] | None, str | None]]) -> None:
        from civicgrid_runtime.faults import crash_point

        for name in {p for _, _, _, p in batch if p}:
            crash_point(name)
        groups: dict[tuple[str, str], list] = {}
        for item in batch:
            groups.setdefault((item[0].full_name, repr(item[2])), []).append(item)
        for items in groups.values():
            col, unchanged = items[0][0], items[0][2]
            docs = [d for _, d, _, _ in items]
            try:
                await self.flush_documents(col, docs, unchanged=unchanged)
            except Exception as exc:  # noqa: BLE001 - marked now, the periodic sweep publishes them
                log.warning("publish after insert failed; the sweep retries", error=repr(exc), documents=len(docs))
                await self.mark(col, [(d["_id"], d[OUTBOX]) for d in docs])

    async def _publish_loop(self) -> None:
        while True:
            batch = [await self._soon.get()]
            # a moment for the writer's answer to go out first and for concurrent inserts to join
            await asyncio.sleep(PUBLISH_LINGER)
            while len(batch) < BULK_CHUNK and not self._soon.empty():
                batch.append(self._soon.get_nowait())
            try:
                await self._publish_soon_batch(batch)
            except Exception as exc:  # noqa: BLE001 - the documents stay flagged; sweep_all at start-up
                log.warning("marking an unpublished insert failed", error=repr(exc))
            finally:
                for _ in batch:
                    self._soon.task_done()

    async def insert_caused(self, collection: AsyncCollection,
                            items: Sequence[tuple[dict[str, Any], Sequence[Envelope]]], *,
                            crash_point_name: str | None = None) -> list[Any]:
        """For a consumer's handler: insert new documents (each with an ``_id``) with the events
        each one causes kept in it (``_caused``), and publish those events. One store write.

        The cause's redelivery is the outbox, so no intent is written first and no sweep runs: a
        consumer commits a cause only after its handler returned, so a crash or a failed publish
        after the insert delivers the cause again, and its insert, finding the document (a
        duplicate ``_id``), publishes the events kept in it again. Readers ignore an event id they
        have applied, so publishing twice is harmless. Returns the ids inserted by this call.
        """
        from civicgrid_runtime.faults import crash_point

        items = [(doc, list(evs)) for doc, evs in items]
        for doc, evs in items:
            if evs:
                doc[CAUSED] = [stamped(e).to_document(with_trace=True) for e in evs]
        duplicate = await insert_new(collection, [doc for doc, _ in items])
        if crash_point_name:
            crash_point(crash_point_name)
        inserted = [(doc, evs) for i, (doc, evs) in enumerate(items) if i not in duplicate]
        events = [e for _, evs in inserted for e in evs]
        if duplicate:
            # written by an earlier delivery of the same cause (which may have died before its
            # publish), or meanwhile by another member's during a rebalance
            stored = await find_by_ids(collection, [items[i][0]["_id"] for i in duplicate], {CAUSED: 1})
            events += caused_events(stored.values())
        await self._publisher.publish_many(events)
        return [doc["_id"] for doc, _ in inserted]

    async def _sweep_intents(self, col: AsyncCollection, cutoff: Any) -> int:
        """Publish the events of batch intents an earlier version left (it wrote one before each
        batch of new documents and deleted it after the publish): those of exactly the documents
        that name the intent."""
        old = await col.database[INTENTS].find({"col": col.name, "at": {"$lte": cutoff}}).to_list(None)
        total = 0
        for b in old:
            items = intent_items(b)
            docs = await find_by_ids(col, [it["doc"] for it in items], {INTENT_FIELD: 1})
            named = {i for i, d in docs.items() if d.get(INTENT_FIELD) == b["_id"]}
            events = [Envelope.from_document(e) for it in items if it["doc"] in named for e in it["events"]]
            if events:
                await self._publisher.publish_many(events)
            await col.database[INTENTS].delete_one({"_id": b["_id"]})
            total += len(events)
        return total

    async def sweep(self) -> int:
        """Republish what crashed writers left behind, reading only the markers and intents."""
        from datetime import UTC, datetime, timedelta

        total = 0
        cutoff = datetime.now(UTC) - timedelta(seconds=self._grace)
        for col in self._collections.values():
            total += await self._sweep_intents(col, cutoff)
            markers = await self._markers(col).find({"col": col.name}).to_list(None)
            old = [m for m in markers if m["at"] <= cutoff]
            OUTBOX_PENDING.labels(col.name).set(len(markers))
            if not old:
                continue
            total += await self.flush(col, {m["doc"] for m in old})
            # what is left marked but no longer (or never) in an outbox: published, or never written
            await bulk_in_chunks(self._markers(col), [DeleteOne({"_id": m["_id"]}) for m in old])
        return total

    async def sweep_all(self) -> int:
        """One full pass over each collection for pending documents (start-up only)."""
        total = 0
        for col in self._collections.values():
            docs = await col.find({PENDING: True}, {OUTBOX: 1}).to_list(None)
            await self._recovered(col, docs)
            total += await self.flush_documents(col, docs)
        return total

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        self._stop.set()
        if self._task:
            await asyncio.wait([self._task], timeout=10)
        if self._publishing is not None:
            if not self._publishing.done():  # let it finish what it holds (a graceful stop publishes)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._soon.join(), timeout=10)
            self._publishing.cancel()
            await asyncio.gather(self._publishing, return_exceptions=True)
        left = []
        while not self._soon.empty():
            left.append(self._soon.get_nowait())
        if left:  # what was inserted but not yet published: now (else the next start's sweep_all)
            try:
                await self._publish_soon_batch(left)
            except Exception as exc:  # noqa: BLE001 - still flagged in the documents
                log.warning("final publish failed; the next start publishes it", error=repr(exc))

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = await self.sweep()
                if n:
                    log.info("outbox sweep published", events=n)
            except Exception as exc:  # noqa: BLE001 - infrastructure hiccup; next sweep retries
                log.warning("outbox sweep failed", error=repr(exc))
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self._interval)
            except asyncio.TimeoutError:
                pass


async def update_with_events(
    collection: AsyncCollection, relay: OutboxRelay | None, *, filter: dict[str, Any],
    update: dict[str, dict[str, Any]], events: Sequence[Envelope] = (), upsert: bool = False,
    crash_point_name: str | None = None,
) -> dict[str, Any] | None:
    """The single-document atomic step of every handler: apply ``update`` and enqueue ``events`` in
    the same document, then publish them (fast path). Returns the document after the update, or
    None when the filter (e.g. an idempotency guard) matched nothing.
    """
    from pymongo import ReturnDocument
    from pymongo.errors import DuplicateKeyError

    from civicgrid_runtime.faults import crash_point

    entries = outbox_entries(events)
    if entries and relay is not None:
        await relay.mark(collection, [(filter["_id"], entries)])
    try:
        doc = await collection.find_one_and_update(
            filter, merge_updates(update, outbox_push(entries)), upsert=upsert, return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError as exc:
        # an upsert whose guard did not match an existing document: it was already applied
        if upsert and "_id" in filter and await collection.find_one({"_id": filter["_id"]}, {"_id": 1}):
            doc = None
        else:
            raise exc
    if crash_point_name:
        crash_point(crash_point_name)
    if relay is not None and events:
        if doc is not None:
            await relay.flush_documents(collection, [doc])
        elif "_id" in filter:
            # already applied (a redelivery): make sure what that first application enqueued is out
            await relay.flush(collection, [filter["_id"]])
    return doc
