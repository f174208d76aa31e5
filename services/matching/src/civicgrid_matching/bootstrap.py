"""The composition root: the one place where adapters are built and wired."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from civicgrid_contracts import topics
from civicgrid_matching.adapters.mongo import MongoStore
from civicgrid_matching.domain.index import VolunteerIndex
from civicgrid_matching.handlers import Matching, bookings, consumed, offers, sync
from civicgrid_matching.ports import Store
from civicgrid_matching.settings import MatchingSettings
from civicgrid_runtime.service import Runtime

CONSUMED = (topics.ASSIGNMENTS.name, topics.CATALOGUE.name, topics.REQUESTS.name)


@dataclass
class Service:
    runtime: Runtime
    matching: Matching


def compose(settings: MatchingSettings, store: Store) -> Matching:
    """The handlers' context on any store (the MongoDB adapter here, the in-memory fake in tests)."""
    return Matching(store, VolunteerIndex(ZoneInfo(settings.timezone)), settings)


async def build(settings: MatchingSettings, *, runtime: Runtime | None = None, consume: bool = True,
                jobs: bool = True, offset_reset: str = "earliest") -> Service:
    rt = runtime or await Runtime.open(settings)
    rt.follow_calendar()  # no deadline is set here, but every service holds the one calendar of the bus
    relay = rt.outbox([rt.db[name] for name in MongoStore.OUTBOX])
    store = MongoStore(rt.db, relay, settings.source)
    await store.ensure_indexes()
    ctx = compose(settings, store)
    await sync.load(ctx)
    if consume:
        # per partition (not merged): the partitions' batches run concurrently, so one's ranking
        # (CPU) overlaps another's store and broker round trips
        rt.consume(list(CONSUMED), lambda batch: consumed.handle_batch(ctx, batch), auto_offset_reset=offset_reset)
    if jobs:
        rt.every(settings.expiry_scan_seconds, lambda: offers.expire_offers(ctx), name="offer-expiry")
        rt.every(settings.index_refresh_seconds, lambda: sync.refresh_index(ctx), name="index-refresh")
        rt.every(60, lambda: bookings.reconcile_holds(ctx), name="reconcile-holds")
    return Service(rt, ctx)
