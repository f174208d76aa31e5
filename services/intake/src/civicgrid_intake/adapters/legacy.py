"""Upgrading from intake's own relay (before ADR 0900): what a crash of the old version left in its
``outbox_markers`` collection is published once at start-up, then the collection is dropped.

The old relay kept a new request's events only in a *batch marker* (packed, with the token the
request document names in ``_ob``) and later writes' events in the document's ``_outbox``, which
the runtime's ``sweep_all`` already publishes. This is the one place that still reads the old
packed markers; it goes once no deployment runs a version older than ADR 0900.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pymongo.asynchronous.database import AsyncDatabase

from civicgrid_runtime.bus import EventPublisher
from civicgrid_runtime.logging import get_logger
from civicgrid_runtime.store import OUTBOX, find_by_ids, pending_events, unpack_json

log = get_logger("civicgrid.intake.legacy")
LEGACY_MARKERS = "outbox_markers"
LEGACY_TOKEN = "_ob"


async def drain_legacy_markers(db: AsyncDatabase, publisher: EventPublisher,
                               link: Callable[[str, str], Awaitable[None]]) -> int:
    """Publish the events of the old batch markers' requests whose document names their token,
    finish their duplicate links, and drop the collection; returns the number of events."""
    if LEGACY_MARKERS not in await db.list_collection_names():
        return 0
    markers = await db[LEGACY_MARKERS].find({}).to_list(None)
    entries = [(m, e) for m in markers for e in m.get("requests", ())]
    stored = await find_by_ids(db["requests"], [e["id"] for _, e in entries], {LEGACY_TOKEN: 1})
    events = []
    for marker, e in entries:
        doc = stored.get(e["id"])
        if doc is None or doc.get(LEGACY_TOKEN) != e[LEGACY_TOKEN]:
            continue  # never written, or written by the other side of an Idempotency-Key race
        if e.get("link_to"):
            await link(e["id"], e["link_to"])
        events += [env for _, env in pending_events({OUTBOX: unpack_json(marker["events"])[e["id"]]})]
    for m in markers:  # an old request marker: its events are in the document (sweep_all); its link here
        if "requests" not in m and m.get("link_to"):
            await link(m["_id"], m["link_to"])
    if events:
        await publisher.publish_many(events)
    await db.drop_collection(LEGACY_MARKERS)
    log.info("old outbox markers drained", markers=len(markers), events=len(events))
    return len(events)
