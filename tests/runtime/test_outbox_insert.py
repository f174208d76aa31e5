"""``OutboxRelay.insert_with_events``: a new document is its own outbox record (no marker) --
published soon after the insert and cleared in one write; a failed publish is marked for the
periodic sweep; a crash leaves it flagged for ``sweep_all``, which runs the collection's recovery
hook before publishing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.grid import RequestNoted
from civicgrid_runtime.store import MARKERS, OUTBOX, PENDING, OutboxRelay, outbox_entries
from civicgrid_runtime.testing import eventually

pytestmark = pytest.mark.infra


class Publisher:
    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.published: list[Envelope] = []

    async def publish_many(self, events) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.published += list(events)


def noted(rid: str) -> Envelope:
    return Envelope.wrap(RequestNoted(request_id=rid, staff_id="s", note="n", noted_at=datetime.now(UTC)),
                         source="/test")


async def test_an_inserted_documents_events_are_published_once_and_cleared_in_one_write(fresh_db):
    col, publisher = fresh_db["things"], Publisher()
    relay = OutboxRelay(publisher, [col])
    events = {f"d-{i}": noted(f"d-{i}") for i in range(5)}
    for rid, env in events.items():
        await relay.insert_with_events(col, {"_id": rid, "version": 1}, [env], unchanged={"version": 1})

    async def cleared():
        return await col.count_documents({PENDING: True}) == 0

    await eventually(cleared)
    assert sorted(e.id for e in publisher.published) == sorted(e.id for e in events.values())
    doc = await col.find_one({"_id": "d-0"})
    assert OUTBOX not in doc and PENDING not in doc  # the unchanged document: one $unset of both
    assert await fresh_db[MARKERS].count_documents({}) == 0
    await relay.stop()


async def test_a_changed_document_keeps_what_arrived_after_the_insert(fresh_db):
    col, publisher = fresh_db["things"], Publisher()
    relay = OutboxRelay(publisher, [col])
    first, later = noted("d"), noted("d")
    await relay.insert_with_events(col, {"_id": "d", "version": 1}, [first], unchanged={"version": 1})
    # before the relay's task runs: another write adds an event and moves the version on
    await col.update_one({"_id": "d"}, {"$set": {"version": 2, PENDING: True, **{
        f"{OUTBOX}.{k}": v for k, v in outbox_entries([later]).items()}}})
    await eventually(lambda: asyncio.sleep(0, result=len(publisher.published) >= 1))
    await relay.stop()
    doc = await col.find_one({"_id": "d"})
    assert [e.id for e in publisher.published] == [first.id]
    assert list(doc[OUTBOX].values())[0]["id"] == later.id and doc[PENDING]  # still to publish


async def test_a_failed_publish_is_marked_and_the_sweep_publishes_it_after_recovery(fresh_db):
    col, publisher = fresh_db["things"], Publisher(fail=True)
    relay = OutboxRelay(publisher, [col], grace=0)
    recovered: list[str] = []

    async def recover(docs):
        recovered.extend(d["_id"] for d in docs)

    relay.recover_with(col, recover)
    env = noted("d")
    await relay.insert_with_events(col, {"_id": "d", "version": 1}, [env], unchanged={"version": 1})

    async def marked():
        return await fresh_db[MARKERS].count_documents({}) == 1

    await eventually(marked)
    publisher.fail = False
    assert await relay.sweep() == 1
    assert [e.id for e in publisher.published] == [env.id] and recovered == ["d"]
    assert await fresh_db[MARKERS].count_documents({}) == 0
    await relay.stop()


async def test_sweep_all_publishes_what_a_crash_left_flagged_after_recovery(fresh_db):
    col, publisher = fresh_db["things"], Publisher()
    env = noted("d")
    # what a process killed between the insert and the publish leaves
    await col.insert_one({"_id": "d", "version": 1, OUTBOX: outbox_entries([env]), PENDING: True})
    relay = OutboxRelay(publisher, [col])
    recovered: list[str] = []

    async def recover(docs):
        recovered.extend(d["_id"] for d in docs)

    relay.recover_with(col, recover)
    assert await relay.sweep_all() == 1
    assert [e.id for e in publisher.published] == [env.id] and recovered == ["d"]
    assert await relay.sweep_all() == 0


async def test_a_graceful_stop_publishes_what_was_just_inserted(fresh_db):
    col, publisher = fresh_db["things"], Publisher()
    relay = OutboxRelay(publisher, [col])
    envs = [noted(f"d-{i}") for i in range(3)]
    for i, env in enumerate(envs):
        await relay.insert_with_events(col, {"_id": f"d-{i}", "version": 1}, [env], unchanged={"version": 1})
    await relay.stop()
    assert sorted(e.id for e in publisher.published) == sorted(e.id for e in envs)
    assert await col.count_documents({PENDING: True}) == 0
