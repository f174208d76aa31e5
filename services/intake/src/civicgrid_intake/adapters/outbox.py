"""The request outbox relay: publishes the events waiting in markers and request documents, in batches.

Why not only the runtime's ``OutboxRelay`` sweep: it finds pending documents with
``find({_outbox_pending: true})``, and FerretDB v1 on SQLite answers nothing but ``_id`` lookups
from an index, so that query reads the whole demand list (measured here: ~0.9 s at 20,000
requests, every sweep). Instead, every write that enqueues events first records a small *marker*
(``outbox_markers``, ``_id`` = request id) and only then writes the request document (state and
events together, one document). The marker collection holds only in-flight work, so its sweep is
cheap on any store. After a crash the sweep publishes what a document still holds, finishes a
half-done duplicate link, and drops markers whose request was never written.

Order of one submission: marker (holding the submission's events and a token) -> request document
(naming the token; 201 answered now) -> publish -> delete the marker. The events of a new request
live only in its marker: clearing them from the document afterwards was one update per request,
several times the cost of the insert on the local store. The sweep publishes a marker's events only
if the stored document names its token (an Idempotency-Key race can leave a marker whose document
was written by the other submission). Later writes of a request (ratings, unmerges) still keep
their events in the document's outbox. Every step is idempotent; publishing twice is harmless
(event ids are deterministic and every reader ignores an id it already applied).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from civicgrid_intake.adapters.locks import KeyedLocks
from civicgrid_runtime.bus import EventPublisher
from civicgrid_runtime.faults import crash_point
from civicgrid_runtime.logging import get_logger
from civicgrid_runtime.store import INTENT_FIELD, OUTBOX, PENDING, bulk_in_chunks, pending_events

log = get_logger("civicgrid.intake.outbox")

CRASH_POINT = "intake.after_store_before_publish"
#: the token a new request's document shares with its marker: the field the runtime's batch intents
#: use for the same purpose (a document names the record of the events its write caused)
TOKEN = INTENT_FIELD


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
        self._known: dict[str, dict[str, Any]] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        #: markers whose events are published, deleted together a moment later: one delete per
        #: submission batch cost the store as much as the batch's inserts (the sweep leaves markers
        #: younger than its grace alone, so a marker waiting here is not published again)
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

    def enqueue_known(self, request_id: str, outbox: dict[str, Any]) -> None:
        """Like ``enqueue``, with the outbox entries the caller just wrote (saves reading them back)."""
        self._known[request_id] = outbox
        self._queue.put_nowait(request_id)

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
        submitted = [(i, pending_events({OUTBOX: box})) for i, box in known.items()]
        for d in docs:
            m = markers.get(d["_id"])
            if m and m.get("events") and m.get(TOKEN) and m.get(TOKEN) == d.get(TOKEN):
                submitted.append((d["_id"], pending_events({OUTBOX: m["events"]})))
        work = [(d["_id"], pending_events(d)) for d in docs if d.get(OUTBOX)]
        events = [env for _, evs in submitted + work for _, env in evs]
        if events:
            await self._publisher.publish_many(events)
        if work:
            # one bulk write; the pending flag goes with the published entries: this relay reads the
            # outbox itself
            async with self.locks.hold_all(i for i, _ in work):
                await bulk_in_chunks(self.requests, [
                    UpdateOne({"_id": i}, {"$unset": {**{f"{OUTBOX}.{k}": "" for k, _ in evs}, PENDING: ""}})
                    for i, evs in work])
        # a marker goes once its document has nothing left to publish (links are done before a
        # request is enqueued here, and the sweep finishes a link before it flushes)
        self._published += list(known) + [d["_id"] for d in docs]
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
        ids = [m["_id"] for m in markers]
        existing = {d["_id"] for d in await self.requests.find({"_id": {"$in": ids}}, {"_id": 1}).to_list(None)}
        for m in markers:
            if m["_id"] not in existing:
                at = m["at"] if m["at"].tzinfo else m["at"].replace(tzinfo=UTC)
                if now - at > self._orphan_after:  # the write never happened: nothing to publish
                    await self.markers.delete_one({"_id": m["_id"]})
                continue
            if m.get("link_to") and self.link_finisher:
                await self.link_finisher(m["_id"], m["link_to"])
                await self.markers.update_one({"_id": m["_id"]}, {"$unset": {"link_to": ""}})
        live = [i for i in ids if i in existing]
        n = 0
        for i in range(0, len(live), self._batch):
            n += await self.flush(live[i:i + self._batch])
        await self.delete_published()
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
