"""The composition root: the one place where intake's adapters are built and wired."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from civicgrid_contracts import topics
from civicgrid_intake.adapters.crypto import ContactVault
from civicgrid_intake.adapters.duplicate_index import DuplicateFeed, DuplicateIndex
from civicgrid_intake.adapters.outbox import RequestRelay
from civicgrid_intake.adapters.repository import Collections
from civicgrid_intake.calendar_years import CalendarYears
from civicgrid_intake.catalogue import Catalogue
from civicgrid_intake.entrypoints.consumers import lifecycle_handler
from civicgrid_intake.handlers import IntakeHandlers
from civicgrid_intake.settings import IntakeSettings
from civicgrid_runtime.access import AccessTrail
from civicgrid_runtime.logging import get_logger
from civicgrid_runtime.ratelimit import RateLimiter
from civicgrid_runtime.service import Runtime

log = get_logger("civicgrid.intake")
LIFECYCLE_TOPICS = (topics.ASSIGNMENTS.name, topics.VOLUNTEERS.name, topics.SUPERVISION.name)


@dataclass
class IntakeService:
    runtime: Runtime
    settings: IntakeSettings
    cols: Collections
    catalogue: Catalogue
    calendar_years: CalendarYears
    relay: RequestRelay
    handlers: IntakeHandlers
    limiter: RateLimiter
    duplicate_feed: DuplicateFeed | None = None

    async def start(self) -> None:
        """Called once the runtime started: indexes, default catalogue, request relay."""
        await self.cols.ensure_indexes()
        if self.settings.load_default_catalogue:
            n = await self.catalogue.load_defaults()
            if n:
                log.info("default catalogue loaded", services=n)
        else:
            await self.catalogue.refresh()
        if self.duplicate_feed is not None:
            await self.duplicate_feed.start(catch_up_seconds=self.settings.duplicate_catch_up_seconds)
        await self.relay.start()

    async def stop(self) -> None:
        await self.handlers.writer.stop()
        await self.relay.stop()
        if self.duplicate_feed is not None:
            await self.duplicate_feed.stop()


async def bootstrap(settings: IntakeSettings | None = None, *, runtime: Runtime | None = None,
                    consume: bool = True) -> IntakeService:
    settings = settings or IntakeSettings()
    rt = runtime or await Runtime.open(settings)
    cols = Collections(rt.db)
    # small collections: the runtime's sweep is cheap here
    admin_relay = rt.outbox([cols.services, cols.calendar_years, cols.staff_access])
    catalogue = Catalogue(cols.services, admin_relay, source=settings.source)
    calendar_years = CalendarYears(cols.calendar_years, admin_relay, rt.follow_calendar(), source=settings.source)
    access = AccessTrail(cols.staff_access, admin_relay, source=settings.source)
    relay = RequestRelay(cols.requests, cols.markers, rt.publisher, batch=settings.flush_batch,
                         sweep_seconds=settings.outbox_sweep_seconds)
    vault = ContactVault(settings.contact_key.get_secret_value(), settings.reporter_key.get_secret_value(),
                         settings.token_key.get_secret_value())
    duplicates = DuplicateIndex(window=timedelta(hours=settings.duplicate_window_hours),
                                distance_m=settings.duplicate_distance_m)
    handlers = IntakeHandlers(cols, catalogue, relay, vault, settings, duplicates=duplicates, calendar=rt.calendar,
                              access=access)
    feed = None
    if consume:
        rt.consume(list(LIFECYCLE_TOPICS), lifecycle_handler(handlers), merge_partitions=True)
        feed = DuplicateFeed(duplicates, bootstrap_servers=settings.kafka_bootstrap_servers,
                             topic=topics.REQUESTS.name)
    rt.every(5.0, catalogue.refresh, name="catalogue-refresh")  # other replicas' admin changes
    limiter = RateLimiter(rt.db["rate_limits"], window_seconds=settings.rate_limit_window_seconds)
    rt.every(min(settings.rate_limit_window_seconds, 300.0), limiter.sweep, name="rate-limit-sweep")
    return IntakeService(runtime=rt, settings=settings, cols=cols, catalogue=catalogue,
                         calendar_years=calendar_years, relay=relay,
                         handlers=handlers, limiter=limiter, duplicate_feed=feed)
