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
from civicgrid_grid.domain.ports import CatalogueStore, RequestStore, RosterStore, StaffStore
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
    #: admin changes (map imports and activations) as events for audit's trail; roster changes
    #: carry theirs in the changed document's own outbox (``roster``)
    access: AccessTrail
    roster: handlers.RosterAdmin

    async def refresh_map(self) -> bool:
        """Load the current map version if it changed (the swap is one reference assignment)."""
        current = await self.maps.current_version()
        if current is None or (self.ctx.city is not None and self.ctx.city.version == current):
            return False
        # no lock: two callers loading the same version at once (start-up) only load it twice
        city = await self.maps.load(current)
        self.ctx.city = city
        log.info("map version loaded", version=current, **(city.counts() if city else {}))
        return True


@dataclass
class GridStores:
    """The adapters grid runs on: bootstrap's parameter (the MongoDB-protocol ones by default)."""

    requests: RequestStore
    staff: StaffStore
    roster: RosterStore
    catalogue: CatalogueStore
    maps: MapRepository

    async def ensure_indexes(self) -> None:
        for store in (self.maps, self.staff, self.roster, self.requests):
            ensure = getattr(store, "ensure_indexes", None)  # the in-memory fakes have none
            if ensure is not None:
                await ensure()


def store_adapters(runtime: Runtime) -> GridStores:
    db = runtime.db
    requests, staff, roster = RequestRepository(db), StaffRepository(db), RosterRepository(db)
    # admin changes go out too: map changes through the access trail, roster changes with the
    # staff or post document they change
    relay = runtime.outbox([requests.col, AccessTrail.collection(db), staff.col, roster.posts])
    requests.relay = staff.relay = roster.relay = relay
    return GridStores(requests, staff, roster, CatalogueRepository(db), MapRepository(db))


async def bootstrap(settings: GridSettings | None = None, *, runtime: Runtime | None = None,
                    stores: GridStores | None = None, consumers: bool = True,
                    create_topics: bool = True) -> GridService:
    settings = settings or GridSettings()
    runtime = runtime or await Runtime.open(settings, create_topics=create_topics)
    stores = stores or store_adapters(runtime)
    ctx = handlers.GridContext(source=settings.source, requests=stores.requests, staff=stores.staff,
                               roster=stores.roster, catalogue=stores.catalogue, calendar=runtime.follow_calendar(),
                               default_report_back_hours=settings.default_report_back_hours,
                               tz=ZoneInfo(settings.timezone))
    access = AccessTrail(AccessTrail.collection(runtime.db), runtime.relay, source=settings.source)
    svc = GridService(settings, runtime, ctx, stores.maps, handlers.Commands(ctx), access, handlers.RosterAdmin(ctx))
    await stores.ensure_indexes()
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
