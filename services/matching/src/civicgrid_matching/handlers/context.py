"""What every handler works with, built once by ``bootstrap``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from civicgrid_matching.domain.catalogue import ServiceInfo
from civicgrid_matching.domain.errors import Busy
from civicgrid_matching.domain.index import VolunteerIndex
from civicgrid_matching.ports import Store
from civicgrid_matching.settings import MatchingSettings

T = TypeVar("T")
#: attempts of one command against concurrent changes of its document before answering "busy"
ATTEMPTS = 20


def now_utc() -> datetime:
    """Now, to the millisecond: what BSON dates keep, so an answer and a later read agree."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


@dataclass
class Matching:
    store: Store
    index: VolunteerIndex
    settings: MatchingSettings
    #: the catalogue's qualifications per service (small; refreshed by every ServiceDefined)
    catalogue: dict[str, ServiceInfo] = field(default_factory=dict)
    clock: Callable[[], datetime] = now_utc
    #: the newest ``updated_at`` the index has seen of volunteers and schedules
    volunteers_seen: datetime | None = None
    schedules_seen: datetime | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)

    @property
    def ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.offer_ttl_seconds)

    def qualifications(self, service_code: str) -> list[str]:
        svc = self.catalogue.get(service_code)
        return list(svc.required_qualifications) if svc else []


async def until_saved(attempt: Callable[[], Awaitable[T | None]], what: str) -> T:
    """The one concurrency rule, applied: read, decide, save guarded by the version read; when
    someone else saved first (``attempt`` returns None), read again and decide again."""
    for _ in range(ATTEMPTS):
        result = await attempt()
        if result is not None:
            return result
    raise Busy(f"{what} is changing too fast; retry")
