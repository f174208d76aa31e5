"""Upgrading from intake's own relay: what the old version's crash left in ``outbox_markers`` is
published once (only for requests whose document names the marker's token), half-done duplicate
links are finished, and the collection goes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.intake import RequestRated
from civicgrid_intake.adapters.legacy import drain_legacy_markers
from civicgrid_runtime.store import outbox_entries, pack_json

pytestmark = pytest.mark.infra


class Publisher:
    def __init__(self) -> None:
        self.published: list[Envelope] = []

    async def publish_many(self, events) -> None:
        self.published += list(events)


def rated(rid: str) -> dict:
    return outbox_entries([Envelope.wrap(RequestRated(request_id=rid, rating="satisfied", rated_at=datetime.now(UTC)),
                                         source="/test")])


async def test_old_batch_markers_are_published_once_then_dropped(fresh_db):
    old = datetime.now(UTC) - timedelta(minutes=5)
    await fresh_db["requests"].insert_many([{"_id": "mine", "_ob": "t1"}, {"_id": "raced", "_ob": "t-other"},
                                            {"_id": "follower", "_ob": "t3"}])
    ids = [("mine", "t1", None), ("raced", "t2", None), ("follower", "t3", "parent"), ("never", "t4", None)]
    await fresh_db["outbox_markers"].insert_many([
        {"_id": "b-1", "at": old, "requests": [{"id": i, "_ob": t, **({"link_to": p} if p else {})} for i, t, p in ids],
         "events": pack_json({i: rated(i) for i, _, _ in ids})},
        {"_id": "single", "at": old, "link_to": "parent-2"}])
    publisher, linked = Publisher(), []

    async def link(rid: str, parent: str) -> None:
        linked.append((rid, parent))

    assert await drain_legacy_markers(fresh_db, publisher, link) == 2
    assert sorted(e.subject for e in publisher.published) == ["follower", "mine"]
    assert linked == [("follower", "parent"), ("single", "parent-2")]
    assert "outbox_markers" not in await fresh_db.list_collection_names()
    assert await drain_legacy_markers(fresh_db, publisher, link) == 0
