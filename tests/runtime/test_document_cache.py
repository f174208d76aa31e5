"""The roster's and catalogue's read-through cache, on the real store: what it answers from memory,
what it reads again, and that a change is seen within its age."""

from __future__ import annotations

import asyncio

import pytest

from civicgrid_runtime.cache import DocumentCache

pytestmark = pytest.mark.infra


class CountingCollection:
    """The real collection, counting the finds the cache sends."""

    def __init__(self, col) -> None:
        self._col = col
        self.name = col.name
        self.finds = 0

    def find(self, *args, **kwargs):
        self.finds += 1
        return self._col.find(*args, **kwargs)


async def test_found_and_absent_documents_are_answered_from_memory(fresh_db):
    await fresh_db["posts"].insert_many([{"_id": "g1:general", "a": "s1"}, {"_id": "g2:general", "a": "s2"}])
    col = CountingCollection(fresh_db["posts"])
    cache = DocumentCache(col, max_age=30)
    first = await cache.get_many(["g1:general", "g2:general", "g3:general"])
    assert set(first) == {"g1:general", "g2:general"}
    assert col.finds == 1
    again = await cache.get_many(["g1:general", "g3:general"])
    assert again == {"g1:general": first["g1:general"]}
    assert col.finds == 1  # g3 is remembered as absent


async def test_an_entry_past_its_age_is_read_again(fresh_db):
    await fresh_db["posts"].insert_one({"_id": "g1:general", "a": "s1"})
    cache = DocumentCache(fresh_db["posts"], max_age=0.2, keep_warm=0)
    assert (await cache.get_many(["g1:general"]))["g1:general"]["a"] == "s1"
    await fresh_db["posts"].update_one({"_id": "g1:general"}, {"$set": {"a": "s9"}})
    assert (await cache.get_many(["g1:general"]))["g1:general"]["a"] == "s1"  # within its age
    await asyncio.sleep(0.25)
    assert (await cache.get_many(["g1:general"]))["g1:general"]["a"] == "s9"


async def test_entries_in_use_are_kept_warm_in_the_background(fresh_db):
    await fresh_db["posts"].insert_one({"_id": "g1:general", "a": "s1"})
    col = CountingCollection(fresh_db["posts"])
    cache = DocumentCache(col, max_age=1.0, keep_warm=10)
    await cache.get_many(["g1:general", "g2:general"])
    await fresh_db["posts"].insert_one({"_id": "g2:general", "a": "s2"})
    await fresh_db["posts"].update_one({"_id": "g1:general"}, {"$set": {"a": "s9"}})
    await asyncio.sleep(1.2)  # refreshed at 0.5 s and 1 s, no batch waiting on either
    finds = col.finds
    got = await cache.get_many(["g1:general", "g2:general"])
    assert col.finds == finds  # answered from memory ...
    assert {k: d["a"] for k, d in got.items()} == {"g1:general": "s9", "g2:general": "s2"}  # ... and current
    await cache.close()  # at the service's stop: no more background reads
    finds = col.finds
    await asyncio.sleep(0.6)
    assert col.finds == finds


async def test_a_large_working_set_is_refreshed_a_chunk_at_a_time(fresh_db):
    """After a burst a whole district's roster is in use: one read of it all stalled the store and
    the loop every second, so the background read goes in chunks."""
    ids = [f"g{i}:general" for i in range(7)]
    await fresh_db["posts"].insert_many([{"_id": i, "a": "s1"} for i in ids])
    col = CountingCollection(fresh_db["posts"])
    cache = DocumentCache(col, max_age=1.0, keep_warm=10, refresh_chunk=3)
    await cache.get_many(ids)
    assert col.finds == 1  # a caller's misses: one query
    await fresh_db["posts"].update_many({}, {"$set": {"a": "s9"}})
    await asyncio.sleep(0.7)  # one refresh, at 0.5 s
    await cache.close()
    assert col.finds == 1 + 3  # 7 ids in chunks of 3
    got = await cache.get_many(ids)
    assert col.finds == 4 and {d["a"] for d in got.values()} == {"s9"}


async def test_invalidate_drops_what_this_process_changed(fresh_db):
    await fresh_db["services"].insert_one({"_id": "repair", "revision": 1})
    cache = DocumentCache(fresh_db["services"], max_age=30)
    assert (await cache.get_many(["repair"]))["repair"]["revision"] == 1
    await fresh_db["services"].update_one({"_id": "repair"}, {"$set": {"revision": 2}})
    cache.invalidate(["repair"])
    assert (await cache.get_many(["repair"]))["repair"]["revision"] == 2


async def test_age_zero_reads_every_time(fresh_db):
    await fresh_db["posts"].insert_one({"_id": "g1:general", "a": "s1"})
    col = CountingCollection(fresh_db["posts"])
    cache = DocumentCache(col, max_age=0, projection={"a": 1})
    await cache.get_many(["g1:general"])
    await cache.get_many(["g1:general"])
    assert col.finds == 2
    together = await asyncio.gather(*(cache.get_many(["g1:general", "absent"]) for _ in range(4)))
    assert col.finds == 3, "concurrent callers still share one read"
    assert all(t == {"g1:general": {"_id": "g1:general", "a": "s1"}} for t in together)


async def test_amend_shows_this_process_change_at_once_and_keeps_the_read_age(fresh_db):
    await fresh_db["cells"].insert_one({"_id": "k", "e": {"r1": 1}})
    col = CountingCollection(fresh_db["cells"])
    cache = DocumentCache(col, max_age=0.3, keep_warm=0)
    await cache.get_many(["k", "absent"])
    await fresh_db["cells"].update_one({"_id": "k"}, {"$set": {"e.r2": 2}})
    cache.amend("k", lambda d: {**d, "e": {**d["e"], "r2": 2}})
    cache.amend("absent", lambda d: {"_id": "absent", "e": {"r3": 3}})
    got = await cache.get_many(["k", "absent"])
    assert col.finds == 1 and got["k"]["e"] == {"r1": 1, "r2": 2} and got["absent"]["e"] == {"r3": 3}
    await fresh_db["cells"].update_one({"_id": "k"}, {"$set": {"e.r4": 4}})  # another replica's write
    await asyncio.sleep(0.35)  # shows once the entry's read is max_age old, amended or not
    assert (await cache.get_many(["k"]))["k"]["e"] == {"r1": 1, "r2": 2, "r4": 4}


async def test_concurrent_misses_are_read_in_one_query_and_a_change_is_not_joined(fresh_db):
    await fresh_db["cells"].insert_many([{"_id": f"k{i}", "e": {}} for i in range(5)])
    col = CountingCollection(fresh_db["cells"])
    cache = DocumentCache(col, max_age=30, keep_warm=0)
    got = await asyncio.gather(*(cache.get_many([f"k{i}", f"k{(i + 1) % 5}", "absent"]) for i in range(5)))
    assert col.finds == 1, "every caller's misses of one turn went to the store together"
    assert all(set(g) == {f"k{i}", f"k{(i + 1) % 5}"} for i, g in enumerate(got))

    # a read begun before this process changed a document: callers after the change read again
    cache.invalidate()
    first = asyncio.ensure_future(cache.get_many(["k0"]))
    await asyncio.sleep(0)  # queued
    await fresh_db["cells"].update_one({"_id": "k0"}, {"$set": {"e.r": 1}})
    cache.amend("k0", lambda d: d and {**d, "e": {"r": 1}})
    second = await cache.get_many(["k0"])
    await first
    assert second["k0"]["e"] == {"r": 1}


async def test_a_caller_that_goes_away_leaves_the_read_to_the_others(fresh_db):
    await fresh_db["cells"].insert_one({"_id": "k", "e": {}})
    cache = DocumentCache(fresh_db["cells"], max_age=30, keep_warm=0)
    leaving = asyncio.ensure_future(cache.get_many(["k"]))
    staying = asyncio.ensure_future(cache.get_many(["k"]))
    await asyncio.sleep(0)
    leaving.cancel()
    assert (await staying)["k"]["_id"] == "k"
