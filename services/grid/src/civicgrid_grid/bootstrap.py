"""The composition root: builds the runtime, repositories and handlers, wires the consumers."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from civicgrid_contracts import topics
from civicgrid_grid import handlers
from civicgrid_grid.adapters.mapstore import MapRepository
from civicgrid_grid.adapters.repos import (
    CatalogueRepository,
    RequestRepository,
    RosterRepository,
    StaffRepository,
)
from civicgrid_grid.settings import GridSettings
from civicgrid_runtime.access import AccessTrail
from civicgrid_runtime.logging import get_logger
from civicgrid_runtime.service import Runtime

log = get_logger("civicgrid.grid")


@dataclass
class GridService:
    settings: GridSettings
    runtime: Runtime
    ctx: handlers.GridContext
    maps: MapRepository
    commands: handlers.Commands
    #: admin changes (map, roster) as events for audit's trail
    access: AccessTrail

    async def refresh_map(self) -> bool:
        """Load the current map version if it changed (the swap is one reference assignment)."""
        current = await self.maps.current_version()
        if current is None or (self.ctx.city is not None and self.ctx.city.version == current):
            return False
        async with self.ctx._city_lock:
            if self.ctx.city is not None and self.ctx.city.version == current:
                return False
            city = await self.maps.load(current)
            self.ctx.city = city
            log.info("map version loaded", version=current, **(city.counts() if city else {}))
        return True


async def ensure_indexes(svc: GridService) -> None:
    await svc.maps.ensure_indexes()
    await svc.ctx.staff.ensure_indexes()
    await svc.ctx.roster.ensure_indexes()
    await svc.ctx.requests.ensure_indexes()


async def bootstrap(settings: GridSettings | None = None, *, runtime: Runtime | None = None,
                    consumers: bool = True, create_topics: bool = True) -> GridService:
    settings = settings or GridSettings()
    runtime = runtime or await Runtime.open(settings, create_topics=create_topics)
    db = runtime.db
    requests = RequestRepository(db)
    access_col = AccessTrail.collection(db)
    relay = runtime.outbox([requests.col, access_col])
    ctx = handlers.GridContext(source=settings.source, publisher=runtime.publisher, relay=relay, requests=requests,
                               staff=StaffRepository(db, cache_seconds=settings.roster_cache_seconds),
                               roster=RosterRepository(db, cache_seconds=settings.roster_cache_seconds),
                               catalogue=CatalogueRepository(db, cache_seconds=settings.roster_cache_seconds),
                               calendar=runtime.follow_calendar(),
                               default_report_back_hours=settings.default_report_back_hours,
                               tz=ZoneInfo(settings.timezone))
    svc = GridService(settings, runtime, ctx, MapRepository(db), handlers.Commands(ctx),
                      AccessTrail(access_col, relay, source=settings.source))
    runtime.on_stop += [ctx.roster.close, ctx.catalogue.close, ctx.staff.close]
    await ensure_indexes(svc)
    await svc.refresh_map()
    if consumers:
        by_topic = {topics.REQUESTS.name: handlers.handle_requests, topics.CATALOGUE.name: handlers.handle_catalogue,
                    topics.SUPERVISION.name: handlers.handle_supervision,
                    topics.VOLUNTEERS.name: handlers.handle_volunteers}

        async def dispatch(batch):
            if ctx.city is None:
                await svc.refresh_map()
            await by_topic[batch[0].topic](ctx, batch)

        # one batch per topic across partitions: assignment works per request, in bulk
        runtime.consume(list(by_topic), dispatch, merge_partitions=True)
    runtime.every(settings.map_refresh_seconds, svc.refresh_map, name="map-refresh")
    return svc
