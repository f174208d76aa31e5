"""What the code relies on from the store, proven against the real one.

MongoDB gives each of these; upstream FerretDB 1.24 does not, and the project's build patches it
(deploy/local/ferretdb/patches, docs/adr/0603). Each test names the patch without which it fails on
the embedded store (checked by building the store without that patch):

- 0001 and 0004: a look-up by ``_id`` (alone, beside other conditions, or ``$in``) uses the ``_id``
  index instead of reading the whole collection;
- 0002: a bulk of more updates than the store's connection pool (100) finishes;
- 0003: an update's filter and change are one atomic step on a document: concurrent ``$inc``
  all count, and of concurrent guarded updates (the runtime's one concurrency rule) one wins.
"""

from __future__ import annotations

import asyncio
import json

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection


async def is_embedded(col: AsyncCollection) -> bool:
    return "ferretdb" in json.dumps(await col.database.client.admin.command("buildInfo"), default=str).lower()


async def plan(col: AsyncCollection, filter: dict) -> str:
    """The store's plan of a find, as text: FerretDB's SQLite plan, or MongoDB's winning plan."""
    out = await col.database.command("explain", {"find": col.name, "filter": filter})
    return json.dumps(out["queryPlanner"].get("Plan") or out["queryPlanner"]["winningPlan"])


async def test_lookups_by_id_use_the_id_index(fresh_db):
    """Patches 0001 (``_id`` equality, also beside other conditions) and 0004 (``_id`` ``$in``)."""
    col = fresh_db["guarantees_index"]
    await col.insert_many([{"_id": f"doc-{i:04d}", "v": i} for i in range(200)])
    for f in ({"_id": "doc-0007"}, {"_id": "doc-0007", "v": 7}, {"_id": {"$in": ["doc-0003", "doc-0150"]}}):
        p = await plan(col, f)
        if await is_embedded(col):
            assert "USING INDEX" in p and "_id_" in p, f"{f} reads the whole collection: {p}"
        else:
            assert "COLLSCAN" not in p, f"{f} reads the whole collection: {p}"
    assert [d["v"] async for d in col.find({"_id": {"$in": ["doc-0003", "doc-0150"]}}).sort("v", 1)] == [3, 150]


async def test_a_bulk_of_more_updates_than_connections_finishes(fresh_db):
    """Patch 0002: each update of a bulk held one of the store's 100 SQLite connections until the
    whole command ended, so a bulk of ~100 updates waited forever."""
    col = fresh_db["guarantees_bulk"]
    await col.insert_many([{"_id": i, "n": 0} for i in range(300)])
    res = await asyncio.wait_for(col.bulk_write([UpdateOne({"_id": i}, {"$inc": {"n": 1}}) for i in range(300)],
                                                ordered=False), timeout=60)
    assert res.modified_count == 300


async def test_concurrent_increments_of_one_document_all_count(fresh_db):
    """Patch 0003: an update was query, change in Go, write back, without isolation (200 concurrent
    ``$inc`` left 12). The KPI counters, shared by every partition, rely on it."""
    col = fresh_db["guarantees_inc"]
    await col.insert_one({"_id": "counter", "m": {"received": 0}})
    await asyncio.gather(*(col.update_one({"_id": "counter"}, {"$inc": {"m.received": 1}}) for _ in range(200)))
    assert (await col.find_one({"_id": "counter"}))["m"]["received"] == 200


async def test_of_concurrent_guarded_updates_exactly_one_wins(fresh_db):
    """Patch 0003: several writers guarded by the same version all "won". Version-guarded updates
    (request documents, log heads, claims taken over) are the runtime's one concurrency rule."""
    col = fresh_db["guarantees_guard"]
    for round_ in range(5):
        await col.replace_one({"_id": "doc"}, {"_id": "doc", "_v": round_, "by": None}, upsert=True)
        results = await asyncio.gather(*(col.update_one({"_id": "doc", "_v": round_},
                                                        {"$set": {"_v": round_ + 1, "by": w}}) for w in range(20)))
        winners = [w for w, r in enumerate(results) if r.modified_count]
        assert len(winners) == 1, f"round {round_}: {len(winners)} writers passed the same version guard"
        assert (await col.find_one({"_id": "doc"}))["by"] == winners[0]
        found = await asyncio.gather(*(col.find_one_and_update({"_id": "doc", "_v": round_ + 1},
                                                               {"$set": {"_v": round_ + 2}}) for _ in range(20)))
        assert sum(d is not None for d in found) == 1
