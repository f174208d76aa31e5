"""Following the working calendar on the bus.

Every process that sets deadlines holds the whole calendar: it reads ``intake.calendar.v1`` from its
beginning without a consumer group (every replica reads every version; the topic is small and never
deleted) and keeps the highest revision of each year. ``start`` returns once the topic has been read
to the end it had, so a process never sets a deadline on a calendar older than the bus's; later
changes arrive while it runs, without a restart.

The rule for a change: a deadline already set stays (it was carried in the event that started its
clock); clocks started after the change use the new calendar.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from civicgrid_contracts import Envelope, MalformedEvent, topics
from civicgrid_contracts.calendar import DEFAULT_CALENDAR, WorkingCalendar, calendar_defects
from civicgrid_contracts.events.calendar import CalendarYearDefined
from civicgrid_runtime.bus import kafka_client_options
from civicgrid_runtime.logging import get_logger

log = get_logger("civicgrid.calendar")


class CalendarFollower:
    def __init__(self, bootstrap_servers: str, *, topic: str = topics.CALENDAR.name,
                 initial: WorkingCalendar = DEFAULT_CALENDAR) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        #: the calendar to compute with now (replaced as a whole on every change)
        self.calendar = initial
        #: year -> the version held (event data), for operators and the admin API
        self.versions: dict[int, CalendarYearDefined] = {}
        self.caught_up = False
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None

    def apply(self, event: CalendarYearDefined) -> bool:
        """Take a version if it is newer than the one held for its year; True when taken."""
        year = event.calendar.year
        held = self.versions.get(year)
        if held is not None and held.revision >= event.revision:
            return False
        defects = calendar_defects(event.calendar)
        if defects:  # intake validates before publishing: a defective version is never computed with
            log.error("calendar version refused", year=year, revision=event.revision, defects=defects)
            return False
        self.versions[year] = event
        self.calendar = self.calendar.with_year(event.calendar)
        log.info("working calendar changed", year=year, revision=event.revision)
        return True

    def describe(self) -> dict[str, Any]:
        return {"years": {str(y): {"revision": v.revision, "changed_at": v.changed_at.isoformat()}
                          for y, v in sorted(self.versions.items())},
                "caught_up": self.caught_up}

    async def start(self, timeout: float = 60.0) -> None:
        """Read the topic to the end it has now; then follow it in the background."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None, **kafka_client_options(),
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    fetch_max_wait_ms=500)
        await consumer.start()
        self._consumer = consumer  # stopped by ``stop`` even when the catch-up below fails
        parts = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or {0})]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        async with asyncio.timeout(timeout):
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                await self._read(consumer, 1000)
        self.caught_up = True
        self._task = asyncio.create_task(self._follow(consumer), name="calendar-follower")

    async def _read(self, consumer: AIOKafkaConsumer, wait_ms: int) -> None:
        batches = await consumer.getmany(timeout_ms=wait_ms, max_records=500)
        for records in batches.values():
            for rec in records:
                try:
                    env = Envelope.from_kafka(rec.value, rec.headers)
                except MalformedEvent as exc:  # the audit consumer dead-letters it; here it is only skipped
                    log.error("unreadable calendar event skipped", offset=rec.offset, reason=str(exc))
                    continue
                if isinstance(env.data, CalendarYearDefined):
                    self.apply(env.data)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                await self._read(consumer, 1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the broker went away: keep the calendar held, retry
                log.warning("calendar follower retrying", error=repr(exc))
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()


@dataclass(frozen=True)
class FixedCalendar:
    """A calendar source that does not follow the bus (a replay, a report, a test): the same
    ``.calendar`` attribute as a ``CalendarFollower``."""

    calendar: WorkingCalendar = DEFAULT_CALENDAR


async def read_calendar(bootstrap_servers: str) -> WorkingCalendar:
    """The working calendar the bus holds now (for tools that run once)."""
    follower = CalendarFollower(bootstrap_servers)
    try:
        await follower.start()
    finally:
        await follower.stop()
    return follower.calendar


class CalendarSource(Protocol):
    """What computes with the calendar needs: the calendar to use now."""

    @property
    def calendar(self) -> WorkingCalendar: ...
