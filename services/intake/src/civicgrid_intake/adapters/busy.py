"""Retry writes the store refused because it was momentarily busy.

FerretDB on SQLite answers concurrent writers with ``database is locked (SQLITE_BUSY)`` instead of
waiting (seen under load here). The write did not happen, so repeating it is safe; every other
error goes straight to the caller.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from pymongo.errors import OperationFailure

from civicgrid_runtime.logging import get_logger

log = get_logger("civicgrid.intake.store")
ATTEMPTS = 12
WRITE_CONCURRENCY = 4


def is_busy(exc: BaseException) -> bool:
    return isinstance(exc, OperationFailure) and ("SQLITE_BUSY" in str(exc) or "database is locked" in str(exc))


_GATES: dict[int, asyncio.Semaphore] = {}


def write_gate() -> asyncio.Semaphore:
    """One store write at a time per process (per event loop). FerretDB/SQLite has one writer anyway;
    letting several of our writes race there produced SQLITE_BUSY and, under sustained load, a store
    that stopped answering. Batching (group commit, bulk flushes) keeps the throughput."""
    loop = asyncio.get_running_loop()
    gate = _GATES.get(id(loop))
    if gate is None:
        gate = _GATES[id(loop)] = asyncio.Semaphore(WRITE_CONCURRENCY)
    return gate


class BusyRetrying:
    """A collection whose writes go through the process's write gate and are retried (with jittered
    backoff) while the store is busy."""

    WRITES = frozenset({"insert_one", "insert_many", "update_one", "update_many", "find_one_and_update",
                        "bulk_write", "delete_one", "delete_many", "replace_one", "create_index"})

    def __init__(self, collection) -> None:
        self._col = collection

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._col, name)
        if name not in self.WRITES:
            return attr

        async def retrying(*args, **kwargs):
            delay = 0.005
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    async with write_gate():
                        return await attr(*args, **kwargs)
                except OperationFailure as exc:
                    if not is_busy(exc) or attempt == ATTEMPTS:
                        raise
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)
            raise AssertionError("unreachable")

        return retrying
