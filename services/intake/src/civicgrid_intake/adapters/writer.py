"""Group commit of submissions: many requests, a handful of store writes.

Each submission waits for its batch: the markers with the events (one ``insert_many``), then the
request documents (one ``insert_many``), then the follower links of the stored duplicates (one bulk
write); the stored requests join this replica's duplicate index. Only then is the submission
answered, so a 201 always means stored. A store write costs about as much for 100
documents as for one, and concurrent single writes collide on FerretDB/SQLite (SQLITE_BUSY);
batching turns both into throughput. Two batches are written at a time, so the store works on one
while the next is gathered and encoded.

The markers go first: a request stored without its marker would never be published after a crash.
A follower link counts, so it waits for the insert.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.errors import BulkWriteError, DuplicateKeyError

from civicgrid_intake.adapters.duplicate_index import DuplicateIndex
from civicgrid_intake.adapters.outbox import TOKEN
from civicgrid_runtime.logging import get_logger

log = get_logger("civicgrid.intake.writer")


@dataclass
class Pending:
    doc: dict[str, Any]
    indexed: dict[str, Any] | None
    parent_id: str | None
    marker: dict[str, Any]
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SubmissionWriter:
    def __init__(self, cols, duplicates: DuplicateIndex, link_followers, *, batch: int = 200,
                 in_flight: int = 2) -> None:
        self.cols = cols
        self.duplicates = duplicates
        self.link_followers = link_followers
        self.batch = batch
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._in_flight = asyncio.Semaphore(in_flight)
        self._writing: set[asyncio.Task] = set()

    async def write(self, doc: dict[str, Any], *, at: datetime, events: dict[str, Any],
                    indexed: dict[str, Any] | None = None, parent_id: str | None = None) -> None:
        """Store one submission (in the next batch); raises DuplicateKeyError if its id exists.
        ``events``: outbox entries, kept in the marker with the document's token; ``indexed``: the
        ``DuplicateIndex.add`` arguments of a request with a point."""
        marker = {"at": at, TOKEN: doc[TOKEN], "events": events, **({"link_to": parent_id} if parent_id else {})}
        p = Pending(doc, indexed, parent_id, marker)
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
        try:
            await self.cols.markers.insert_many([{"_id": p.doc["_id"], **p.marker} for p in batch], ordered=False)
        except BulkWriteError as exc:  # a marker left by an earlier attempt of the same request: fine
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise
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
