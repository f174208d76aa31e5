"""Start-up migration: request documents of an older shape rewritten in today's, once per database.

The supervision lists and the scanner query today's plain fields (``open``, ``escalation_count``,
``late_since``, ``deadline``, ``next_escalation_at``). A request an older version stored and nothing
wrote since lacks some of them, and the lists used to look for such documents with a second query
on every call (documents without ``schema_version``; ``deadlines`` for the clocks of version 2):
on the embedded store, which reads the whole collection for any query but one by ``_id``, that
doubled every list's cost for good (docs/adr/0604). Instead they are rewritten at start, through
the one upcaster path (``documents.upcast``), and the lists query today's fields only.

- Idempotent and safe beside other replicas and the projection: each document is rewritten with an
  update guarded by the version it was read at (``_v``, the one concurrency rule, ADR 0601); a write
  that loses found the document rewritten by its writer meanwhile, in today's shape.
- Once it has run through, ``migrations/<collection>@<version>`` records it, so later starts read
  one document by ``_id`` instead of looking through the collection again (on MongoDB the older-shape
  query has no index). An older release's replica must not run beside this one once it has: what
  it wrote meanwhile would be listed only when next written (stop it first, as for any migration).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pymongo import ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from civicgrid_audit.adapters.documents import MIGRATIONS, stamped, upcast
from civicgrid_audit.adapters.projection import request_collection, stored_document
from civicgrid_runtime.store import BULK_CHUNK, find_by_ids, insert_new

#: the version since which a request document has every field the lists and the scanner query (3:
#: its clocks, ``deadline`` and ``next_escalation_at``); a later one needs no rewrite for them
LISTED_SINCE = 3


def older_than(version: int) -> dict[str, Any]:
    """The filter of documents stored before ``version`` (or before versions at all)."""
    return {"$or": [{"schema_version": {"$exists": False}}, {"schema_version": {"$lt": version}}]}


def migration_id(collection: str, version: int) -> str:
    return f"{collection}@{version}"


async def upgrade_requests(db: AsyncDatabase) -> int | None:
    """Rewrite the request documents stored before ``LISTED_SINCE`` in today's shape; returns how
    many this call rewrote, or None when the database was upgraded already."""
    version = LISTED_SINCE
    requests = db[request_collection("")]
    marker = migration_id(requests.name, version)
    if await db[MIGRATIONS].find_one({"_id": marker}, {"_id": 1}) is not None:
        return None
    # the ids first, then the documents by ``_id`` a chunk at a time: no cursor open over the
    # collection while it is written, and one chunk of documents in memory
    ids = [d["_id"] async for d in requests.find(older_than(version), {"_id": 1})]
    rewritten = 0
    for i in range(0, len(ids), BULK_CHUNK):
        rewritten += await _rewrite(requests, ids[i:i + BULK_CHUNK], version)
    await insert_new(db[MIGRATIONS], [stamped(MIGRATIONS, {
        "_id": marker, "collection": requests.name, "version": version, "rewritten": rewritten,
        "finished_at": datetime.now(UTC)})])  # a replica that finished first wrote it already: the same
    return rewritten


async def _rewrite(requests: AsyncCollection, ids: list[str], version: int) -> int:
    ops = []
    for rid, doc in (await find_by_ids(requests, ids)).items():
        if int(doc.get("schema_version") or 0) >= version:
            continue  # its writer wrote it in today's shape since the ids were read
        read_at = doc["_v"]
        today = upcast(requests.name, doc)
        today.update(_v=read_at + 1, _w=uuid.uuid4().hex)
        ops.append(ReplaceOne({"_id": rid, "_v": read_at}, stored_document(today)))
    if not ops:
        return 0
    res = await requests.bulk_write(ops, ordered=False)
    return res.modified_count
