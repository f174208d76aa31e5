"""The store helpers against the real MongoDB-protocol server: concurrent writers of one document
inside a process lose nothing (FerretDB v1 itself does not make read-modify-write atomic)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.grid import RequestNoted
from civicgrid_runtime import EventPublisher
from civicgrid_runtime.store import (
    CAUSED,
    INTENT_FIELD,
    INTENTS,
    OUTBOX,
    OutboxRelay,
    intent_items,
    mark_applied,
    not_applied,
    pack_json,
    update_with_events,
)

pytestmark = pytest.mark.infra


async def test_concurrent_updates_of_one_document_with_events_lose_nothing(infra, fresh_db):
    publisher = EventPublisher(infra.kafka)
    await publisher.start()
    col = fresh_db["requests"]
    relay = OutboxRelay(publisher, [col])
    rid = f"req-{uuid.uuid4()}"
    await col.insert_one({"_id": rid, "n": 0})

    async def one(i: int) -> None:
        note = RequestNoted(request_id=rid, staff_id="s1", note=f"note {i}", noted_at=datetime.now(UTC))
        env = Envelope.wrap(note, source="/test")
        await update_with_events(col, relay, filter={"_id": rid, **not_applied(env.id)},
                                 update={"$inc": {"n": 1}, **mark_applied(env.id)}, events=[env])

    try:
        await asyncio.gather(*(one(i) for i in range(40)))
        doc = await col.find_one({"_id": rid})
        assert doc["n"] == 40, "no increment lost"
        assert len(doc["_applied"]) == 40
        assert not doc.get(OUTBOX), "every enqueued event was published and cleared"
        assert await fresh_db["_outbox_markers"].count_documents({}) == 0
    finally:
        await publisher.stop()


class RecordingPublisher:
    """Stands in for the broker where the test is about what the store decides to publish."""

    def __init__(self, *, fail: bool = False) -> None:
        self.published: list[Envelope] = []
        self.fail = fail

    async def publish_many(self, events) -> None:
        if self.fail:
            raise ConnectionError("broker unreachable")
        self.published += list(events)


def noted(rid: str, text: str) -> Envelope:
    return Envelope.wrap(RequestNoted(request_id=rid, staff_id="s1", note=text, noted_at=datetime.now(UTC)),
                         source="/test")


async def test_insert_caused_publishes_each_new_document_once_and_leaves_no_outbox(infra, fresh_db):
    col = fresh_db["requests"]
    publisher = RecordingPublisher()
    relay = OutboxRelay(publisher, [col])
    await col.insert_one({"_id": "r-old", "n": 0})  # written by an earlier delivery
    items = [({"_id": f"r-{i}", "n": i}, [noted(f"r-{i}", "a"), noted(f"r-{i}", "b")]) for i in range(3)]
    items.append(({"_id": "r-old", "n": 9}, [noted("r-old", "again")]))
    items.append(({"_id": "r-quiet", "n": 0}, []))

    inserted = await relay.insert_caused(col, items)
    await relay.stop()

    assert sorted(inserted) == ["r-0", "r-1", "r-2", "r-quiet"]
    assert sorted(e.subject for e in publisher.published) == ["r-0", "r-0", "r-1", "r-1", "r-2", "r-2"]
    assert (await col.find_one({"_id": "r-old"}))["n"] == 0, "the earlier delivery's document stays"
    assert not await col.find_one({OUTBOX: {"$exists": True}})
    assert await fresh_db[INTENTS].count_documents({}) == 0


async def test_an_intent_an_earlier_version_left_publishes_exactly_the_documents_that_name_it(infra, fresh_db):
    """An earlier version wrote one intent per batch of new documents, then the documents naming
    it, and deleted it after the publish; one left behind by a crash is still swept."""
    col = fresh_db["requests"]
    events = {f"r-{i}": noted(f"r-{i}", "assigned") for i in range(3)}
    intent = {"_id": "an-intent", "col": col.name, "at": datetime.now(UTC) - timedelta(minutes=1),
              "packed": pack_json([{"doc": rid, "events": [e.to_document()]} for rid, e in events.items()])}
    await fresh_db[INTENTS].insert_one(intent)
    # one document of the batch was never written (cut short before it landed), and another
    # delivery later wrote r-1 under its own intent: those events are not this batch's to publish
    await col.insert_many([{"_id": "r-0", INTENT_FIELD: "an-intent"}, {"_id": "r-1", INTENT_FIELD: "a-later-batch"}])

    publisher = RecordingPublisher()
    survivor = OutboxRelay(publisher, [col], grace=0.0)
    assert await survivor.sweep() == 1
    assert [e.subject for e in publisher.published] == ["r-0"]
    assert publisher.published[0].id == intent_items(intent)[0]["events"][0]["id"]
    assert await fresh_db[INTENTS].count_documents({}) == 0
    assert await survivor.sweep() == 0, "nothing left to publish"


async def test_insert_caused_keeps_the_events_in_the_document_for_a_redelivered_cause(infra, fresh_db):
    """No intent: the events live in the document, and a cause delivered again (its first handling
    died before or while publishing) publishes them again from there, as does a duplicate insert
    (another delivery of the same cause wrote the document and may die before publishing)."""
    col = fresh_db["requests"]
    items = [({"_id": f"r-{i}", "n": i}, [noted(f"r-{i}", "assigned")]) for i in range(3)]
    with pytest.raises(ConnectionError):
        await OutboxRelay(RecordingPublisher(fail=True), [col]).insert_caused(col, items)
    stored = await col.find({}).sort("_id").to_list(None)
    assert [d["_id"] for d in stored] == ["r-0", "r-1", "r-2"] and all(d.get(CAUSED) for d in stored)
    assert await fresh_db[INTENTS].count_documents({}) == 0, "nothing but the documents was written"

    publisher = RecordingPublisher()
    relay = OutboxRelay(publisher, [col])
    # the causes delivered again: r-0 and r-1 as before, r-2 decided otherwise this time, r-3 new
    again = [({"_id": "r-0", "n": 0}, [noted("r-0", "assigned")]), ({"_id": "r-1", "n": 1}, [noted("r-1", "assigned")]),
             ({"_id": "r-2", "n": 9}, [noted("r-2", "decided again")]), ({"_id": "r-3"}, [noted("r-3", "new")])]
    assert await relay.insert_caused(col, again) == ["r-3"]
    first = {e.subject: e for _, evs in items for e in evs}
    assert sorted(e.id for e in publisher.published if e.subject in ("r-0", "r-1")) == sorted(
        [first["r-0"].id, first["r-1"].id])
    assert sorted((e.subject, e.data.note) for e in publisher.published if e.subject in ("r-2", "r-3")) == [
        ("r-2", "assigned"), ("r-3", "new")], "the stored decision, not the new one, is published for r-2"
    assert (await col.find_one({"_id": "r-2"}))["n"] == 2
