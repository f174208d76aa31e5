"""The request outbox relay: publishes the events waiting in markers and request documents, in batches.

Why not only the runtime's ``OutboxRelay`` sweep: it finds pending documents with
``find({_outbox_pending: true})``, and FerretDB v1 on SQLite answers nothing but ``_id`` lookups
from an index, so that query reads the whole demand list (measured here: ~0.9 s at 20,000
requests, every sweep). Instead, every write that enqueues events first records a small *marker* in
``outbox_markers`` and only then writes the request documents. The marker collection holds only
in-flight work, so its sweep is cheap on any store. After a crash the sweep publishes what the
markers and documents still hold, finishes half-done duplicate links, and drops markers whose
requests were never written.

Order of a batch of submissions: one *batch marker* (``_id`` ``b-...``: each request's id, token and
duplicate link, and all their events packed in one field) -> the request documents (each naming its
token; 201s answered now) -> publish -> delete the marker once all its requests are published. The
events of a new request live only in the marker: clearing them from the document afterwards was one
update per request, several times the cost of the insert on the local store. The sweep publishes a
request's events only if the stored document names its token (an Idempotency-Key race can leave an
entry whose document was written by the other submission). Later writes of a request (ratings,
unmerges) keep their events in the document's outbox and mark it with a *request marker* (``_id`` =
request id, the only kind earlier versions wrote, so the sweep still reads those with events too).
Every step is idempotent; publishing twice is harmless (event ids are deterministic and every reader
ignores an id it already applied).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from civicgrid_contracts import Envelope
from civicgrid_intake.adapters.locks import KeyedLocks
from civicgrid_runtime.bus import EventPublisher
from civicgrid_runtime.faults import crash_point
from civicgrid_runtime.logging import get_logger
from civicgrid_runtime.store import (
    INTENT_FIELD,
    OUTBOX,
    PENDING,
    bulk_in_chunks,
    find_by_ids,
    pack_json,
    pending_events,
    unpack_json,
)

log = get_logger("civicgrid.intake.outbox")

CRASH_POINT = "intake.after_store_before_publish"
#: the token a new request's document shares with its marker: the field the runtime's batch intents
#: use for the same purpose (a document names the record of the events its write caused)
TOKEN = INTENT_FIELD


def batch_marker(marker_id: str, *, at: datetime,
                 requests: list[tuple[str, str, str | None, dict[str, Any]]]) -> dict[str, Any]:
    """The marker of a batch of new requests: (request id, token, parent id or None, outbox entries)
    each. The events are packed: as nested documents they were most of the marker's cost."""
    return {"_id": marker_id, "at": at,
            "requests": [{"id": rid, TOKEN: token, **({"link_to": parent} if parent else {})}
                         for rid, token, parent, _ in requests],
            "events": pack_json({rid: events for rid, _, _, events in requests})}


class RequestRelay:
    def __init__(self, requests: AsyncCollection, markers: AsyncCollection, publisher: EventPublisher, *,
                 batch: int = 200, sweep_seconds: float = 1.0, orphan_after: float = 30.0,
                 delete_every_seconds: float = 0.1) -> None:
        self.requests = requests
        self.markers = markers
        self._publisher = publisher
        self._batch = batch
        self._sweep_seconds = sweep_seconds
        self._orphan_after = timedelta(seconds=orphan_after)
        #: the sweep leaves fresh markers to the fast path (avoids publishing the same events twice)
        self._grace = timedelta(seconds=max(2.0, 2 * sweep_seconds))
        self.locks = KeyedLocks()
        #: request id -> (events, batch marker id) of stored requests not yet published
        self._known: dict[str, tuple[list[Envelope], str]] = {}
        #: batch marker id -> its requests not yet published
        self._batches: dict[str, set[str]] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        #: markers whose events are published, deleted together a moment later (the sweep leaves
        #: markers younger than its grace alone, so a marker waiting here is not published again)
        self._published: list[str] = []
        self._delete_every = delete_every_seconds
        self._tasks: list[asyncio.Task] = []
        #: completes a duplicate link left half-done by a crash: (request id, parent id) -> None
        self.link_finisher: Callable[[str, str], Awaitable[None]] | None = None

    # -- writing side

    async def mark(self, request_id: str, *, link_to: str | None = None) -> None:
        doc: dict[str, Any] = {"at": datetime.now(UTC)}
        if link_to:
            doc["link_to"] = link_to
        await self.markers.update_one({"_id": request_id}, {"$set": doc}, upsert=True)

    def enqueue_batch(self, marker_id: str, stored: dict[str, list[Envelope]]) -> None:
        """Publish a written batch: its marker's id and the events of its stored requests (the
        writer calls this; nothing is read back)."""
        self._track(marker_id, stored)
        for rid in stored:
            self._queue.put_nowait(rid)

    def _track(self, marker_id: str, stored: dict[str, list[Envelope]]) -> None:
        """Remember a batch's events until published; its marker goes once they all are."""
        if not stored:
            self._published.append(marker_id)
            return
        self._batches[marker_id] = set(stored)
        for rid, events in stored.items():
            self._known[rid] = (events, marker_id)

    def enqueue(self, request_ids: Iterable[str]) -> None:
        """Publish these requests' pending events soon (called after the HTTP answer was sent)."""
        for rid in request_ids:
            self._queue.put_nowait(rid)

    # -- publishing side

    async def flush(self, request_ids: list[str]) -> int:
        crash_point(CRASH_POINT)
        ids = list(dict.fromkeys(request_ids))
        known = {i: self._known.pop(i) for i in ids if i in self._known}
        unknown = [i for i in ids if i not in known]
        docs, markers = [], {}
        if unknown:
            docs, found = await asyncio.gather(
                self.requests.find({"_id": {"$in": unknown}}, {OUTBOX: 1, TOKEN: 1}).to_list(None),
                self.markers.find({"_id": {"$in": unknown}}).to_list(None))
            markers = {m["_id"]: m for m in found}
        # events of new requests: from this process's memory, or from a marker whose token the
        # stored document names; then what later writes left in documents' outboxes
        submitted = [evs for evs, _ in known.values()]
        for d in docs:
            m = markers.get(d["_id"])
            if m and m.get("events") and m.get(TOKEN) and m.get(TOKEN) == d.get(TOKEN):
                submitted.append([env for _, env in pending_events({OUTBOX: m["events"]})])
        work = [(d["_id"], pending_events(d)) for d in docs if d.get(OUTBOX)]
        events = [env for evs in submitted for env in evs] + [env for _, evs in work for _, env in evs]
        if events:
            await self._publisher.publish_many(events)
        if work:
            # one bulk write; the pending flag goes with the published entries: this relay reads the
            # outbox itself
            async with self.locks.hold_all(i for i, _ in work):
                await bulk_in_chunks(self.requests, [
                    UpdateOne({"_id": i}, {"$unset": {**{f"{OUTBOX}.{k}": "" for k, _ in evs}, PENDING: ""}})
                    for i, evs in work])
        # a marker goes once its documents have nothing left to publish (links are done before a
        # request is enqueued here, and the sweep finishes a link before it flushes)
        for rid, (_, marker_id) in known.items():
            waiting = self._batches.get(marker_id)
            if waiting is not None:
                waiting.discard(rid)
                if not waiting:
                    del self._batches[marker_id]
                    self._published.append(marker_id)
        self._published += [d["_id"] for d in docs]
        return len(events)

    async def delete_published(self) -> None:
        """Delete the markers of what was published (a small collection: in-flight work only)."""
        done, self._published = self._published, []
        for i in range(0, len(done), 1000):
            await self.markers.delete_many({"_id": {"$in": done[i:i + 1000]}})

    async def sweep(self, *, everything: bool = False) -> int:
        """Finish what a crash (or a failed fast path) left: cheap, markers are only in-flight work."""
        now = datetime.now(UTC)
        q = {} if everything else {"at": {"$lt": now - self._grace}}
        markers = await self.markers.find(q).limit(self._batch).to_list(None)
        if not markers:
            return 0
        batches = [m for m in markers if "requests" in m]
        singles = [m for m in markers if "requests" not in m]
        ids = [m["_id"] for m in singles] + [e["id"] for m in batches for e in m["requests"]]
        stored = await find_by_ids(self.requests, ids, {TOKEN: 1})
        n = 0
        for m in batches:
            n += await self._finish_batch(m, stored, now)
        for m in singles:
            if m["_id"] not in stored:
                if self._orphaned(m, now):  # the write never happened: nothing to publish
                    await self.markers.delete_one({"_id": m["_id"]})
                continue
            if m.get("link_to") and self.link_finisher:
                await self.link_finisher(m["_id"], m["link_to"])
                await self.markers.update_one({"_id": m["_id"]}, {"$unset": {"link_to": ""}})
        live = [m["_id"] for m in singles if m["_id"] in stored]
        for i in range(0, len(live), self._batch):
            n += await self.flush(live[i:i + self._batch])
        await self.delete_published()
        return n

    def _orphaned(self, marker: dict[str, Any], now: datetime) -> bool:
        at = marker["at"] if marker["at"].tzinfo else marker["at"].replace(tzinfo=UTC)
        return now - at > self._orphan_after

    async def _finish_batch(self, marker: dict[str, Any], stored: dict[str, dict[str, Any]], now: datetime) -> int:
        """Publish a batch marker's requests whose stored document names their token, after finishing
        their duplicate links; entries never written are dropped once the marker is old enough."""
        entries = marker["requests"]
        if any(e["id"] not in stored for e in entries) and not self._orphaned(marker, now):
            return 0  # the batch may still be being written
        mine = [e for e in entries if e["id"] in stored and stored[e["id"]].get(TOKEN) == e[TOKEN]]
        for e in mine:
            if e.get("link_to") and self.link_finisher:
                await self.link_finisher(e["id"], e["link_to"])  # idempotent
        events = unpack_json(marker["events"])
        self._track(marker["_id"], {e["id"]: [env for _, env in pending_events({OUTBOX: events[e["id"]]})]
                                    for e in mine})
        n = 0
        for i in range(0, len(mine), self._batch):
            n += await self.flush([e["id"] for e in mine[i:i + self._batch]])
        return n

    async def _flush_loop(self) -> None:
        while True:
            first = await self._queue.get()
            ids = [first]
            while len(ids) < self._batch and not self._queue.empty():
                ids.append(self._queue.get_nowait())
            try:
                await self.flush(ids)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the markers keep the work; the sweep retries it
                log.warning("fast-path publish failed; the sweep will retry", error=repr(exc), requests=len(ids))

    async def _delete_loop(self) -> None:
        while True:
            await asyncio.sleep(self._delete_every)
            if not self._published:
                continue
            try:
                await self.delete_published()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the sweep finds a marker left behind and republishes
                log.warning("deleting published markers failed", error=repr(exc))

    async def _sweep_loop(self) -> None:
        while True:
            try:
                n = await self.sweep()
                if n:
                    log.info("outbox sweep published", events=n)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - infrastructure hiccup; the next sweep retries
                log.warning("outbox sweep failed", error=repr(exc))
            await asyncio.sleep(self._sweep_seconds)

    async def start(self) -> None:
        await self.sweep(everything=True)  # what a previous crash left behind, before new work
        self._tasks = [asyncio.create_task(self._flush_loop(), name="intake-flush"),
                       asyncio.create_task(self._delete_loop(), name="intake-marker-delete"),
                       asyncio.create_task(self._sweep_loop(), name="intake-sweep")]

    async def stop(self) -> None:
        # publish what is queued before going away (best effort; the markers cover the rest)
        pending: list[str] = []
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            if pending:
                await self.flush(pending)
            await self.delete_published()
        except Exception as exc:  # noqa: BLE001
            log.warning("final flush failed; the next start publishes it", error=repr(exc))
