"""The composition root: the one place where adapters are built and wired."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from civicgrid_contracts import topics
from civicgrid_matching.adapters.store import Collections
from civicgrid_matching.domain.index import VolunteerIndex
from civicgrid_matching.handlers import Matching
from civicgrid_matching.settings import MatchingSettings
from civicgrid_runtime.service import Runtime

CONSUMED = (topics.ASSIGNMENTS.name, topics.CATALOGUE.name, topics.REQUESTS.name)


@dataclass
class Service:
    runtime: Runtime
    matching: Matching


async def build(settings: MatchingSettings, *, runtime: Runtime | None = None, consume: bool = True,
                jobs: bool = True, offset_reset: str = "earliest") -> Service:
    rt = runtime or await Runtime.open(settings)
    rt.follow_calendar()  # matching sets no deadline; it holds the calendar like every service, for operators
    cols = Collections(rt.db)
    await cols.ensure_indexes()
    relay = rt.outbox([cols.matches, cols.hours])
    m = Matching(cols, relay, VolunteerIndex(ZoneInfo(settings.timezone)), settings)
    await m.load()
    if consume:
        # per partition (not merged): the partitions' batches run concurrently, so one's ranking
        # (CPU) overlaps another's store and broker round trips; merged, the bench ran ~15% slower
        rt.consume(list(CONSUMED), m.handle_batch, auto_offset_reset=offset_reset)
    if jobs:
        rt.every(settings.expiry_scan_seconds, m.expire_offers, name="offer-expiry")
        rt.every(settings.index_refresh_seconds, m.refresh_index, name="index-refresh")
        rt.every(60, m.reconcile_holds, name="reconcile-holds")
        rt.every(5, m.republish_batches, name="republish-batches")
    return Service(rt, m)
