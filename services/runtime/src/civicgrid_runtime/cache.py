"""Documents read by id and kept a short while: what nearly every batch or request reads but what
changes seldom, or mostly through this process (grid's posts, chain holders and catalogue;
intake's duplicate-search buckets)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from civicgrid_runtime.logging import get_logger
from civicgrid_runtime.store import find_by_ids

log = get_logger("civicgrid.cache")


class DocumentCache:
    """Reads by ``_id`` through a cache whose entries are at most ``max_age`` seconds old.

    Absent documents are remembered too (a post nobody holds is asked for again and again). Every
    half ``max_age`` a background task reads again, a chunk at a time, the entries used in the last
    ``keep_warm`` seconds: a roster that the batches touch stays in memory, where entries expiring
    one by one would each cost a round trip on some batch's path (at 200 requests/s over a
    district's 216 grids, half the batches had one). What another replica changes is seen within
    ``max_age``; what this process changes, at once (``invalidate``, ``amend``). ``max_age=0`` keeps
    nothing: every call reads, but the reads of concurrent callers still go in one query. ``close`` stops the
    background reads (``Runtime.on_stop``). ``keep_warm=0``: no background reads (for documents
    that are large, many, and each read seldom: reading them all twice a second costs more than
    the reads it saves).
    """

    def __init__(self, collection: AsyncCollection, *, max_age: float, keep_warm: float | None = None,
                 max_entries: int = 50_000, projection: dict[str, Any] | None = None,
                 refresh_chunk: int = 100) -> None:
        self.collection = collection
        #: ids per background read: after a burst the whole district's roster is in use, and one
        #: read of it all (1,500 documents) stalled the store and this loop for tens of ms every
        #: second: most of grid's remaining p99 at 200/s
        self.refresh_chunk = refresh_chunk
        self.max_age = max_age
        self.projection = projection
        self.keep_warm = keep_warm if keep_warm is not None else 10 * max_age
        self.max_entries = max_entries
        #: id -> (when read, the document or None when absent)
        self._entries: dict[str, tuple[float, dict[str, Any] | None]] = {}
        #: id -> when last asked for
        self._used: dict[str, float] = {}
        self._refresher: asyncio.Task | None = None
        #: bumped by ``invalidate()`` of everything: a read begun before it must not bring old documents back
        self._generation = 0
        #: id -> when this process last changed it (``amend``, ``invalidate``): the same, for one document
        self._changed: dict[str, float] = {}
        #: reads asked for and not begun: concurrent callers' misses go to the store in one query
        self._queued: list[tuple[str, asyncio.Future]] = []
        #: id -> the read (queued or begun) a caller missing it joins, until this process changes it
        self._pending: dict[str, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None

    async def get_many(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        if self.max_age <= 0:  # nothing kept; concurrent reads still go together
            found = await self._load(list(ids))
            return {i: d for i, d in found.items() if d is not None}
        now = time.monotonic()
        out: dict[str, dict[str, Any]] = {}
        missing = []
        warm = self.keep_warm > 0
        for i in ids:
            if warm:
                self._used[i] = now
            hit = self._entries.get(i)
            if hit is None or now - hit[0] >= self.max_age:
                missing.append(i)
            elif hit[1] is not None:
                out[i] = hit[1]
        if warm and (self._refresher is None or self._refresher.done()):
            self._refresher = asyncio.create_task(self._keep_warm(), name=f"cache-{self.collection.name}")
        if missing:
            found = await self._load(missing)
            out.update({i: d for i, d in found.items() if d is not None})
        return out

    async def _load(self, ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """Read these through the shared reader: the misses of every caller in this turn of the
        event loop go in one query (under load, intake's submissions each missed a bucket and
        each paid a query of its own), and an id already being read is not read twice."""
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future] = {}
        for i in ids:
            f = self._pending.get(i)
            if f is None:
                f = self._pending[i] = loop.create_future()
                self._queued.append((i, f))
            futures[i] = f
        if self._queued and (self._reader is None or self._reader.done()):
            self._reader = asyncio.create_task(self._read_queued(), name=f"cache-read-{self.collection.name}")
        # shielded: a caller cancelled while waiting must not cancel the read others wait for
        docs = await asyncio.gather(*(asyncio.shield(f) for f in futures.values()))
        return dict(zip(futures, docs, strict=True))

    async def _read_queued(self) -> None:
        await asyncio.sleep(0)  # the other callers of this turn queue their misses
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                found = await self._read(list(dict.fromkeys(i for i, _ in batch)))
            except Exception as exc:  # noqa: BLE001 - every caller waiting for this read gets the error
                for _, f in batch:
                    if not f.done():
                        f.set_exception(exc)
                        f.exception()  # retrieved: a caller that went away leaves no warning
            else:
                for i, f in batch:
                    if not f.done():
                        f.set_result(found.get(i))
            finally:
                for i, f in batch:
                    if self._pending.get(i) is f:
                        del self._pending[i]

    def amend(self, i: str, change: Callable[[dict[str, Any] | None], dict[str, Any] | None]) -> None:
        """This process just changed document ``i`` in the store: make the same change to the entry
        held, if any (``change`` gets the document or None, returns the new one). The entry keeps
        the age of its last read, so what other processes wrote still shows within ``max_age``."""
        self._changed[i] = time.monotonic()  # a read begun before must not bring the old document back
        self._pending.pop(i, None)  # nor be joined by a caller from now on
        hit = self._entries.get(i)
        if hit is not None:
            self._entries[i] = (hit[0], change(hit[1]))

    def invalidate(self, ids: Iterable[str] | None = None) -> None:
        """Forget these entries (all of them without ``ids``): this process just changed them (call
        it after the write, so that no read begun before the write brings the old document back)."""
        if ids is None:
            self._generation += 1
            self._entries.clear()
            self._pending.clear()
            return
        now = time.monotonic()
        for i in ids:
            self._changed[i] = now
            self._entries.pop(i, None)
            self._pending.pop(i, None)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None

    async def _read(self, ids: list[str]) -> dict[str, dict[str, Any] | None]:
        generation, at = self._generation, time.monotonic()
        found: dict[str, dict[str, Any] | None] = dict.fromkeys(ids)
        found.update(await find_by_ids(self.collection, ids, self.projection))
        if generation == self._generation and self.max_age > 0:
            if len(self._entries) + len(found) > self.max_entries:
                self._entries = {k: v for k, v in self._entries.items() if at - v[0] < self.max_age}
                self._changed = {k: t for k, t in self._changed.items() if at - t < self.max_age}
            self._entries.update({i: (at, d) for i, d in found.items() if self._changed.get(i, -1.0) < at})
        return found

    async def _keep_warm(self) -> None:
        """Until nothing was used for ``keep_warm`` seconds: every half age, read again what was used."""
        while self._used:
            await asyncio.sleep(self.max_age / 2)
            now = time.monotonic()
            self._used = {i: t for i, t in self._used.items() if now - t < self.keep_warm}
            self._changed = {i: t for i, t in self._changed.items() if now - t < self.max_age}
            ids = [i for i in self._used if now - self._entries.get(i, (0.0, None))[0] >= self.max_age / 2]
            if not ids:
                continue
            try:
                for i in range(0, len(ids), self.refresh_chunk):
                    await self._read(ids[i:i + self.refresh_chunk])
            except Exception:  # noqa: BLE001 - the entries expire and are read on a batch's path instead
                log.warning("cache_refresh_failed", collection=self.collection.name, ids=len(ids), exc_info=True)
