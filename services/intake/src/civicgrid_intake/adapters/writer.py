"""Group commit of submissions: many requests, a handful of store writes.

Each submission waits for its batch: the batch's outbox marker (one document naming every request
of the batch, with their events packed), then the request documents (one ``insert_many``), then the
follower links of the stored duplicates (one bulk write); the stored requests join this replica's
duplicate index. Only then is the submission answered, so a 201 always means stored; the stored
batch then goes to the relay, which publishes it and deletes the marker.

One marker per batch rather than one per request: the store's work grows with the documents and
the fields it writes, and a marker per request (its events as nested documents) cost about as much
as the request itself, plus a delete (measured here: 150 us of store CPU per marker document with
nested events, 70 us with them packed, once per batch instead of per request now). A store write
costs about as much for 100 documents as for one, and concurrent single writes collide on
FerretDB/SQLite (SQLITE_BUSY); batching turns both into throughput. Two batches are written at a time, so the store works on one
while the next is gathered and encoded.

The marker goes first: a request stored without its marker would never be published after a crash.
A follower link counts, so it waits for the insert.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.errors import BulkWriteError, DuplicateKeyError

from civicgrid_contracts import Envelope
from civicgrid_intake.adapters.duplicate_index import DuplicateIndex
from civicgrid_intake.adapters.outbox import TOKEN, batch_marker
from civicgrid_runtime.logging import get_logger
from civicgrid_runtime.store import outbox_entries
from civicgrid_runtime.tracing import stamped

log = get_logger("civicgrid.intake.writer")


@dataclass
class Pending:
    doc: dict[str, Any]
    indexed: dict[str, Any] | None
    parent_id: str | None
    at: datetime
    events: list[Envelope]
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SubmissionWriter:
    def __init__(self, cols, duplicates: DuplicateIndex, link_followers,
                 on_stored: Callable[[str, dict[str, list[Envelope]]], None], *, batch: int = 200,
                 in_flight: int = 2) -> None:
        self.cols = cols
        self.duplicates = duplicates
        self.link_followers = link_followers
        #: called with a written batch's marker id and its stored requests' events (the relay)
        self.on_stored = on_stored
        self.batch = batch
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._in_flight = asyncio.Semaphore(in_flight)
        self._writing: set[asyncio.Task] = set()

    async def write(self, doc: dict[str, Any], *, at: datetime, events: list[Envelope],
                    indexed: dict[str, Any] | None = None, parent_id: str | None = None) -> None:
        """Store one submission (in the next batch); raises DuplicateKeyError if its id exists.
        ``events``: what the submission caused, kept in the batch's marker with the document's
        token; ``indexed``: the ``DuplicateIndex.add`` arguments of a request with a point."""
        # stamped here, in the request's own context: the batch is written by the writer's task
        p = Pending(doc, indexed, parent_id, at, [stamped(e) for e in events])
        if self._task is None or self._task.done():
            self.start()
        self._queue.put_nowait(p)
        await p.future

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="intake-writer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for t in list(self._writing):
            t.cancel()
        await asyncio.gather(*self._writing, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._in_flight.acquire()
            try:
                batch = [await self._queue.get()]
            except asyncio.CancelledError:
                self._in_flight.release()
                raise
            while len(batch) < self.batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            task = asyncio.create_task(self._answer(batch), name="intake-writer-batch")
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    async def _answer(self, batch: list[Pending]) -> None:
        try:
            await self._write(batch)
        except asyncio.CancelledError:
            for p in batch:
                if not p.future.done():
                    p.future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - every waiting submission gets the error (503/500)
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
        finally:
            self._in_flight.release()

    async def _write(self, batch: list[Pending]) -> None:
        marker_id = f"b-{uuid.uuid4().hex}"
        await self.cols.markers.insert_one(batch_marker(
            marker_id, at=min(p.at for p in batch),
            requests=[(p.doc["_id"], p.doc[TOKEN], p.parent_id, outbox_entries(p.events)) for p in batch]))
        failed: dict[int, BaseException] = {}
        try:
            await self.cols.requests.insert_many([p.doc for p in batch], ordered=False)
        except BulkWriteError as exc:
            for err in exc.details.get("writeErrors", []):
                if err.get("code") == 11000:
                    failed[err["index"]] = DuplicateKeyError(err.get("errmsg", "duplicate key"))
                else:
                    failed[err["index"]] = exc
        for i, p in enumerate(batch):
            if p.indexed and i not in failed:
                self.duplicates.add(p.doc["_id"], **p.indexed)
        await self.link_followers([(p.doc["_id"], p.parent_id) for i, p in enumerate(batch)
                                   if p.parent_id and i not in failed])
        for i, p in enumerate(batch):
            if i in failed:
                p.future.set_exception(failed[i])
            else:
                p.future.set_result(None)
        # after the answers: their tasks were woken first, so the 201s go out before the publishing
        self.on_stored(marker_id, {p.doc["_id"]: p.events for i, p in enumerate(batch) if i not in failed})
