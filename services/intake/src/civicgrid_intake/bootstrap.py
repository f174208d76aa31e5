"""The composition root: the one place where intake's adapters are built and wired."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from civicgrid_contracts import topics
from civicgrid_intake.adapters.calendar_years import CalendarYears
from civicgrid_intake.adapters.catalogue import Catalogue
from civicgrid_intake.adapters.crypto import ContactVault
from civicgrid_intake.adapters.duplicate_index import DuplicateFeed, DuplicateIndex
from civicgrid_intake.adapters.legacy import drain_legacy_markers
from civicgrid_intake.adapters.repository import Collections, MongoApiKeys, MongoRequests
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
    handlers: IntakeHandlers
    limiter: RateLimiter
    duplicate_feed: DuplicateFeed | None = None

    async def ensure_indexes(self) -> None:
        await self.cols.ensure_indexes()

    async def start(self) -> None:
        """Called once the runtime started: indexes, what an older version left, default catalogue,
        duplicate feed."""
        await self.cols.ensure_indexes()
        await drain_legacy_markers(self.cols.db, self.runtime.publisher, self.handlers.link_follower)
        if self.settings.load_default_catalogue:
            n = await self.catalogue.load_defaults()
            if n:
                log.info("default catalogue loaded", services=n)
            if completed := await self.catalogue.complete_shipped_texts():
                log.info("shipped questions given their second language", services=completed)
        else:
            await self.catalogue.refresh()
        if self.duplicate_feed is not None:
            await self.duplicate_feed.start(catch_up_seconds=self.settings.duplicate_catch_up_seconds)

    async def stop(self) -> None:
        if self.duplicate_feed is not None:
            await self.duplicate_feed.stop()


async def bootstrap(settings: IntakeSettings | None = None, *, runtime: Runtime | None = None,
                    consume: bool = True) -> IntakeService:
    settings = settings or IntakeSettings()
    rt = runtime or await Runtime.open(settings)
    cols = Collections(rt.db)
    # the runtime's relay: the one outbox protocol of the platform
    relay = rt.outbox([cols.requests, cols.services, cols.calendar_years, cols.staff_access])
    catalogue = Catalogue(cols.services, relay, source=settings.source)
    calendar_years = CalendarYears(cols.calendar_years, relay, rt.follow_calendar(), source=settings.source)
    vault = ContactVault(settings.contact_key.get_secret_value(), settings.reporter_key.get_secret_value(),
                         settings.token_key.get_secret_value())
    duplicates = DuplicateIndex(window=timedelta(hours=settings.duplicate_window_hours),
                                distance_m=settings.duplicate_distance_m)
    access = AccessTrail(cols.staff_access, relay, source=settings.source)
    handlers = IntakeHandlers(MongoRequests(cols.requests, relay), MongoApiKeys(cols.api_keys), access, catalogue,
                              vault, settings, duplicates=duplicates, calendar=rt.calendar)
    limiter = RateLimiter(rt.db["rate_limits"], window_seconds=settings.rate_limit_window_seconds)
    rt.every(min(settings.rate_limit_window_seconds, 300.0), limiter.sweep, name="rate-limit-sweep")
    # a crash between storing a merged request and linking it to the request it follows: the
    # relay's recovery finishes the link before it publishes the request's events
    relay.recover_with(cols.requests, handlers.recover)
    feed = None
    if consume:
        rt.consume(list(LIFECYCLE_TOPICS), lifecycle_handler(handlers), merge_partitions=True)
        feed = DuplicateFeed(duplicates, bootstrap_servers=settings.kafka_bootstrap_servers,
                             topic=topics.REQUESTS.name)
    rt.every(5.0, catalogue.refresh, name="catalogue-refresh")  # other replicas' admin changes
    return IntakeService(runtime=rt, settings=settings, cols=cols, catalogue=catalogue,
                         calendar_years=calendar_years, handlers=handlers, limiter=limiter, duplicate_feed=feed)
