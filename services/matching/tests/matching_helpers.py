"""Fixtures of matching's integration tests: the real service (HTTP app + consumers + jobs) on the
real broker and store, with its own database and consumer group."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.grid import VolunteerRequested
from civicgrid_contracts.values import Location
from civicgrid_matching.settings import MatchingSettings
from civicgrid_runtime.auth import mint_token
from civicgrid_runtime.testing import eventually

SECRET = "matching-test-secret-0123456789abcdef"
ANCHOR = (39.90, 116.30)


def staff() -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(secret=SECRET, sub='staff-1', role='supervisor')}"}


def as_volunteer(vid: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(secret=SECRET, sub=vid, role='volunteer')}"}


def next_weekday(weekday: int, hour: int, minute: int = 0, weeks: int = 1) -> datetime:
    """A future local (Asia/Shanghai, UTC+8) time on ``weekday`` (0 = Monday), as UTC."""
    now = datetime.now(UTC) + timedelta(hours=8)
    d = now.date() + timedelta(days=(weekday - now.weekday()) % 7 + 7 * weeks)
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


def volunteer_body(vid: str, north_m: float = 0, east_m: float = 0, skills=("elderly_care_home",), **kw) -> dict:
    body = {"id": vid, "name": f"Name {vid}", "phone": "13900000000", "community": kw.pop("community", "c-01"),
            "lat": ANCHOR[0] + north_m / 111_195, "lon": ANCHOR[1] + east_m / 85_300, "skills": list(skills),
            "availability": [{"day": d, "start": "00:00", "end": "24:00"}
                             for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")],
            "weekly_hours_cap": 20}
    body.update(kw)
    return body


def requested(rid: str | None = None, *, service="elderly_care_home", at: datetime | None = None, hours=2.0,
              resident_ref: str | None = None, recurring=False, north_m=0.0, east_m=0.0, community="c-01") -> Envelope:
    rid = rid or f"req-{uuid.uuid4().hex[:12]}"
    p = VolunteerRequested(
        request_id=rid, service_code=service,
        location=Location(lat=ANCHOR[0] + north_m / 111_195, lon=ANCHOR[1] + east_m / 85_300),
        community=community, needed_from=at or next_weekday(0, 10), needed_hours=hours, recurring_weekly=recurring,
        resident_ref=resident_ref, requested_by="staff-1", requested_at=datetime.now(UTC))
    return Envelope.wrap(p, source="/civicgrid/grid")


async def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1):
    return await eventually(predicate, timeout=timeout, interval=interval)


class Harness:
    def __init__(self, app, client: httpx.AsyncClient, settings: MatchingSettings) -> None:
        self.app, self.http, self.settings = app, client, settings
        #: ids of the events this service published: the topics are shared, and other matching
        #: services running on the machine (other tests' platforms) answer the same requests
        self.sent: set[str] = set()
        publisher = self.publisher
        send = publisher.publish_many

        async def publish_many(envelopes, *, topic=None):
            self.sent.update(e.id for e in envelopes)
            await send(envelopes, topic=topic)

        publisher.publish_many = publish_many

    async def events(self, infra, rid: str, since, type_: str | None = None, *, distinct: bool = True
                     ) -> list[Envelope]:
        """This service's events about ``rid`` on its topic since ``since``, as the broker has them
        (``distinct``: one per id)."""
        from civicgrid_contracts import topics
        from civicgrid_runtime.testing import read_topic

        recs = await read_topic(infra.kafka, topics.VOLUNTEERS.name, since=since, timeout=0.5)
        envs = [Envelope.from_kafka(r.value, r.headers) for r in recs if r.key == rid.encode()]
        # one per id: ids derive from the cause, so another matching service answering the same
        # request publishes some of the very same ids (and every reader drops such a repeat)
        unique = {e.id: e for e in reversed(envs)} if distinct else {}
        return [e for e in envs if (not distinct or unique[e.id] is e) and e.id in self.sent
                and (type_ is None or e.type == type_)]

    @property
    def service(self):
        return self.app.state.service

    @property
    def m(self):
        return self.service.matching

    @property
    def publisher(self):
        return self.service.runtime.publisher

    async def register(self, *bodies: dict) -> None:
        for b in bodies:
            r = await self.http.post("/volunteers", json=b, headers=staff())
            assert r.status_code == 201, r.text

    async def match(self, rid: str, status: str | None = None, timeout: float = 20.0):
        """The request's match (the aggregate, read through the store adapter), once it exists
        (and has ``status``)."""
        async def get():
            m = await self.m.store.matches.get(rid)
            return m if m and (status is None or m.status == status) else None

        return await wait_for(get, timeout)

    @property
    def db(self):
        return self.m.store.db




class Clock:
    """A settable clock for handlers on the fake store."""

    def __init__(self, t: datetime | None = None) -> None:
        self.t = t or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw) -> None:
        self.t += timedelta(**kw)


def on_fake(**overrides):
    """Matching's handlers on the in-memory store, with a settable clock (``ctx.clock``)."""
    from civicgrid_matching.adapters.memory import MemoryStore
    from civicgrid_matching.bootstrap import compose

    settings = MatchingSettings(**{"offers_at_once": 1, "offer_ttl_seconds": 600, **overrides})
    ctx = compose(settings, MemoryStore(settings.source))
    ctx.clock = Clock()
    return ctx


def delivery(env: Envelope, offset: int = 0):
    from civicgrid_contracts import topics
    from civicgrid_runtime.bus import Delivery

    return Delivery(env, topics.ASSIGNMENTS.name, 0, offset)
