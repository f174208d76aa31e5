"""The store helpers against the real MongoDB-protocol server: concurrent writers of one document
inside a process lose nothing (FerretDB v1 itself does not make read-modify-write atomic)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.grid import RequestNoted
from civicgrid_runtime import EventPublisher
from civicgrid_runtime.store import OUTBOX, OutboxRelay, mark_applied, not_applied, update_with_events

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
