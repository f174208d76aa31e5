"""KPI counting: the requests' pending deltas added to the counter documents every few seconds, not
with every batch.

A request document's write keeps the difference its change made to its KPI contribution as a pending
delta tagged with the partition and offset that caused it (``kpi_pending``, ``<position>@<offset>``;
adapters/projection.py). ``CounterLedger`` takes those deltas as batches are folded and adds them up
every ``AUDIT_KPI_FLUSH_SECONDS``: a counter every request of a grid, staff member or day shares is
then written once per flush instead of once per batch (most of audit's writes were counter writes).
Exactly once, without holding back the consumer's commits:

- ``kpi_positions/{position}.offset``: every delta of that position at or below it is counted. It
  moves forward (a guarded update) after each flush has written the counters;
- a counter records per position the offset of the last delta it counted (``_pos``); each flush's
  write of a counter is guarded by it (the runtime's one concurrency rule, ADR 0601), so a delta
  counted by another process in the meantime (a rebalance) is taken out and the write tried again;
- a request's next write drops only the deltas of a position at or below the offset this process
  knows counted (``still_pending``); the others stay in the document until counted;
- when a process starts on a position, or finds a gap before a batch (a rebalance, a redelivery), it
  reads the records folded since ``kpi_positions`` from the audit log (by ``_id``, from its end),
  reads their requests and takes their pending deltas of that position again; a process's first
  count does so for every position (a replica that died left deltas of partitions whose next event
  may be far off). A crash between a batch and the next count loses nothing: the deltas are in the
  request documents, and the log says which requests to read. Any process may count any position's
  deltas: the guards make each count once.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from civicgrid_audit.adapters.auditlog import AuditLog
from civicgrid_audit.adapters.documents import COUNTERS, KPI_POSITIONS, stamped, upcast
from civicgrid_audit.domain import kpi
from civicgrid_runtime.store import POSITIONS, bulk_in_chunks, find_by_ids, insert_new

RequestReader = Callable[[list[str]], Awaitable[dict[str, dict[str, Any]]]]
#: a position whose offset moved without deltas (a topic without requests' events) is written at
#: most this often: it only bounds what a process starting there reads back from the log
QUIET_POSITION_SECONDS = 600.0
#: rounds of a flush's guarded counter writes before it gives up (another process keeps counting)
ATTEMPTS = 20


def split_tag(tag: str) -> tuple[str, int]:
    position, _, offset = tag.partition("@")
    return position, int(offset)


class CounterLedger:
    def __init__(self, db: AsyncDatabase, log: AuditLog, read_requests: RequestReader) -> None:
        self.counters = db[COUNTERS]
        self.positions = db[KPI_POSITIONS]
        self.log = log
        self.read_requests = read_requests
        #: tag -> delta taken and not counted yet
        self._deltas: dict[str, dict[str, dict[str, int]]] = {}
        #: position -> offset at or below which every delta is counted, as far as this process knows
        self._counted: dict[str, int] = {}
        #: position -> the offset after the last batch this process folded there
        self._next: dict[str, int] = {}
        #: position -> (offset, monotonic time) of its kpi_positions document as last written here
        self._stored: dict[str, tuple[int, float]] = {}
        self._recovered_all = False

    def counted(self, position: str) -> int:
        """The offset at or below which every delta of ``position`` is counted (-1: none known)."""
        return self._counted.get(position, -1)

    async def ready(self, position: str, first_offset: int) -> None:
        """Before a batch of ``position`` from ``first_offset``: unless this process folded the batch
        just before it, learn what is counted there and take the deltas folded since again."""
        if self._next.get(position) == first_offset:
            return
        stored = upcast(KPI_POSITIONS, await self.positions.find_one({"_id": position}))
        if stored is None:  # a position new to counting: what came before it was counted with its batch
            try:
                await self.positions.insert_one(stamped(KPI_POSITIONS, {"_id": position, "offset": first_offset - 1}))
                stored = {"offset": first_offset - 1}
            except DuplicateKeyError:
                stored = upcast(KPI_POSITIONS, await self.positions.find_one({"_id": position}))
        counted = int(stored["offset"])
        self._counted[position] = counted
        self._stored[position] = (counted, time.monotonic())
        if counted + 1 < first_offset:
            await self._take_folded_since(position, counted, first_offset)

    async def _take_folded_since(self, position: str, counted: int, before: int) -> None:
        """Take again the pending deltas of ``position`` folded after ``counted`` (and before ``before``)."""
        records = await self.log.records_between(position, counted, before)
        subjects = sorted({json.loads(r["raw"]).get("subject") or "" for r in records} - {""})
        for doc in (await self.read_requests(subjects)).values():
            self.take([position], doc)

    async def _take_everything_uncounted(self) -> None:
        """At a process's first count: every position's deltas folded since its last count, whoever
        folded them (a replica that died may have left some of a partition now quiet)."""
        async for stored in self.positions.find({}):
            position, counted = stored["_id"], int(upcast(KPI_POSITIONS, stored)["offset"])
            self._counted.setdefault(position, counted)
            await self._take_folded_since(position, counted, 2**63)
        self._recovered_all = True

    def take(self, positions: Iterable[str], doc: dict[str, Any] | None) -> None:
        """Take the pending deltas of ``positions`` a request document holds (again: by tag, once)."""
        wanted = set(positions)
        for tag, delta in ((doc or {}).get("kpi_pending") or {}).items():
            position, offset = split_tag(tag)
            if position in wanted and offset > self.counted(position) and delta:
                self._deltas[tag] = delta

    def folded(self, position: str, last_offset: int) -> None:
        """A batch of ``position`` up to ``last_offset`` is folded and its deltas taken."""
        self._next[position] = last_offset + 1

    @property
    def waiting(self) -> int:
        return len(self._deltas)

    async def flush(self) -> int:
        """Count every delta taken so far; returns how many counters were written."""
        if not self._recovered_all:
            await self._take_everything_uncounted()
        deltas, self._deltas = self._deltas, {}
        upto = {p: n - 1 for p, n in self._next.items()}  # folded, and their deltas are in `deltas` or counted
        try:
            written = await self._count(deltas)
        except BaseException:
            for tag, delta in deltas.items():
                self._deltas.setdefault(tag, delta)
            raise
        await self._advance(upto, {split_tag(tag)[0] for tag in deltas})
        return written

    async def _count(self, deltas: dict[str, dict[str, dict[str, int]]]) -> int:
        """Add the deltas to their counters, each counter's write guarded by the offsets it recorded."""
        by_counter: dict[str, list[tuple[str, int, dict[str, int]]]] = defaultdict(list)
        for tag, delta in deltas.items():
            position, offset = split_tag(tag)
            for cid, m in delta.items():
                by_counter[cid].append((position, offset, m))
        written = 0
        for _attempt in range(ATTEMPTS):
            if not by_counter:
                return written
            positions = {p for entries in by_counter.values() for p, _, _ in entries}
            recorded = {cid: c.get(POSITIONS) or {} for cid, c in (await find_by_ids(
                self.counters, sorted(by_counter), {f"{POSITIONS}.{p}": 1 for p in positions})).items()}
            plans = {cid: _plan(entries, recorded.get(cid, {})) for cid, entries in by_counter.items()}
            plans = {cid: plan for cid, plan in plans.items() if plan is not None}
            new = [cid for cid in plans if cid not in recorded]
            taken = await insert_new(self.counters, [_new_counter(cid, *plans[cid]) for cid in new])
            inserted = {cid for i, cid in enumerate(new) if i not in taken}
            ops = [UpdateOne(_guard(cid, plans[cid][2]), _update(*plans[cid][:2]))
                   for cid in plans if cid not in inserted]
            if ops:
                await bulk_in_chunks(self.counters, ops)
            written += len(inserted)
            # read back what is still to count (a guard that did not hold: another writer counted there)
            by_counter = {cid: by_counter[cid] for cid in plans if cid not in inserted}
            if not ops:
                return written
            still = {cid: c.get(POSITIONS) or {} for cid, c in (await find_by_ids(
                self.counters, sorted(by_counter), {f"{POSITIONS}.{p}": 1 for p in positions})).items()}
            by_counter = {cid: entries for cid, entries in by_counter.items()
                          if _plan(entries, still.get(cid, {})) is not None}
            written += len(ops) - len(by_counter)
        raise RuntimeError(f"KPI counters kept changing under this flush: {sorted(by_counter)[:5]}")

    async def _advance(self, upto: dict[str, int], counted_now: set[str]) -> None:
        """Record per position the offset at or below which every delta is counted now."""
        now = time.monotonic()
        for position, offset in upto.items():
            stored, at = self._stored.get(position, (-1, 0.0))
            if offset <= stored or (position not in counted_now and now - at < QUIET_POSITION_SECONDS):
                self._counted[position] = max(self.counted(position), offset)
                continue
            await self.positions.update_one({"_id": position, "offset": {"$lt": offset}},
                                            {"$set": stamped(KPI_POSITIONS, {"offset": offset})})
            self._stored[position] = (offset, now)
            self._counted[position] = max(self.counted(position), offset)


def _plan(entries: list[tuple[str, int, dict[str, int]]], recorded: dict[str, int]
          ) -> tuple[dict[str, int], dict[str, int], dict[str, int]] | None:
    """What a counter still has to add: (sum, position -> highest offset in it, position -> lowest
    offset in it), or None when the counter recorded every entry already."""
    total: dict[str, int] = {}
    top: dict[str, int] = {}
    low: dict[str, int] = {}
    for position, offset, m in entries:
        if offset > recorded.get(position, -1):
            kpi.add_into(total, m)
            top[position] = max(top.get(position, -1), offset)
            low[position] = min(low.get(position, offset), offset)
    return (total, top, low) if top else None


def _guard(cid: str, low: dict[str, int]) -> dict[str, Any]:
    """The counter, if it recorded none of the offsets about to be added (per position)."""
    return {"_id": cid, "$and": [{"$or": [{f"{POSITIONS}.{p}": {"$exists": False}},
                                          {f"{POSITIONS}.{p}": {"$lt": offset}}]} for p, offset in low.items()]}


def _update(total: dict[str, int], top: dict[str, int]) -> dict[str, Any]:
    update: dict[str, Any] = {"$set": stamped(COUNTERS, {f"{POSITIONS}.{p}": off for p, off in top.items()})}
    inc = {f"m.{k}": v for k, v in total.items() if v}
    if inc:
        update["$inc"] = inc
    return update


def _new_counter(cid: str, total: dict[str, int], top: dict[str, int], _low: dict[str, int]) -> dict[str, Any]:
    dim, key, day = kpi.split_counter_id(cid)
    return stamped(COUNTERS, {"_id": cid, "dim": dim, "key": key, "day": day,
                              "m": {k: v for k, v in total.items() if v}, POSITIONS: dict(top)})
