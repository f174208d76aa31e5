"""One contract for the storage port, run against the in-memory fake and the real store alike:
what the handlers rely on (guarded saves, unique claims, events published with a save, the
queries) holds for both, so handler tests on the fake say something about production."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient

sys.path.insert(0, str(Path(__file__).parents[1]))
from matching_helpers import requested  # noqa: E402

from civicgrid_contracts.events import catalogue as cat_ev  # noqa: E402
from civicgrid_matching.adapters.memory import MemoryStore  # noqa: E402
from civicgrid_matching.adapters.mongo import MongoStore  # noqa: E402
from civicgrid_matching.domain.catalogue import ServiceInfo  # noqa: E402
from civicgrid_matching.domain.errors import AlreadyRegistered  # noqa: E402
from civicgrid_matching.domain.hours import HoursEntry  # noqa: E402
from civicgrid_matching.domain.index import Candidate  # noqa: E402
from civicgrid_matching.domain.match import Match, Shortlist  # noqa: E402
from civicgrid_matching.domain.schedule import Schedule  # noqa: E402
from civicgrid_matching.domain.volunteer import Volunteer  # noqa: E402
from civicgrid_runtime.store import OutboxRelay  # noqa: E402
from civicgrid_runtime.testing import drop_quietly, unique  # noqa: E402

NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
TTL = timedelta(minutes=30)
SOURCE = "/civicgrid/matching"


class Recording:
    def __init__(self) -> None:
        self.published: list = []

    async def publish_many(self, events) -> None:
        self.published += list(events)


class Subject:
    """A store and where its published events can be seen."""

    def __init__(self, store, published) -> None:
        self.store, self._published = store, published

    def published(self) -> list[str]:
        return [e.type.rsplit(".", 1)[-1] for e in self._published()]


@pytest.fixture(params=["memory", pytest.param("mongo", marks=pytest.mark.infra)])
def backend(request):
    """The store's kind, and the real infrastructure where it needs it (resolved outside the loop)."""
    return request.param, request.getfixturevalue("infra") if request.param == "mongo" else None


@pytest_asyncio.fixture
async def subject(backend):
    kind, infra = backend
    if kind == "memory":
        store = MemoryStore(SOURCE)
        yield Subject(store, lambda: store.published)
        return
    client = AsyncMongoClient(infra.mongodb, tz_aware=True)
    db = client[unique("matching_contract")]
    rec = Recording()
    relay = OutboxRelay(rec, [db[name] for name in MongoStore.OUTBOX])
    store = MongoStore(db, relay, SOURCE)
    await store.ensure_indexes()
    try:
        yield Subject(store, lambda: rec.published)
    finally:
        await drop_quietly(client, db.name)
        await client.close()


def volunteer(vid: str, **kw) -> Volunteer:
    profile = {"name": f"Name {vid}", "community": "c-01", "lat": 39.9, "lon": 116.3, "skills": ["care"], **kw}
    return Volunteer.register(vid, profile, by="staff", now=NOW)


def offered_match(vids=("v-1", "v-2")) -> Match:
    m = Match.requested(requested(at=NOW + timedelta(days=1)), [])
    m.offer_first(Shortlist([Candidate(v, i + 1, 0.9 - i / 10, 100.0 * (i + 1), {"distance": 1.0})
                             for i, v in enumerate(vids)], len(vids), "matched"), NOW, TTL)
    return m


async def test_volunteers_claim_their_id_and_saves_are_guarded(subject):
    vols = subject.store.volunteers
    v = volunteer("v-1", party_member=True, work_unit="School")
    await vols.add(v)
    with pytest.raises(AlreadyRegistered):
        await vols.add(volunteer("v-1"))
    stored = await vols.get("v-1")
    assert stored == v and stored.version == 1
    stale = await vols.get("v-1")
    stored.rate("r-1", "satisfied", NOW + timedelta(seconds=1))
    assert await vols.save(stored) and stored.version == 2
    stale.count("declines", NOW)
    assert await vols.save(stale) is False
    assert (await vols.get("v-1")).ratings == {"r-1": 1.0}
    await vols.add(volunteer("v-2", community="c-02"))
    assert [x.id for x in await vols.page("c-02", 0, 10)] == ["v-2"]
    assert [x.id for x in await vols.changed_since(NOW + timedelta(seconds=1))] == ["v-1"]
    assert [x.id for x in await vols.members_of("School")] == ["v-1"] and await vols.work_units() == ["School"]
    assert set(await vols.many(["v-1", "v-2", "v-3"])) == {"v-1", "v-2"}


async def test_volunteers_are_found_by_the_prefix_of_their_community_code(subject):
    """An area scope's queries (domain/scope.py): codes nest by prefix; a prefix is no pattern."""
    vols = subject.store.volunteers
    for vid, community, unit in (("v-1", "110101001001", "School"), ("v-2", "110101001002", "Court"),
                                 ("v-3", "110101002001", "School"), ("v-4", "1101010010010", None),
                                 ("v-5", "110101001.01", "Tax"), ("v-6", "demo-community-03", "Tax")):
        await vols.add(volunteer(vid, community=community, party_member=unit is not None, work_unit=unit))
    assert [x.id for x in await vols.page(None, 0, 10, within="110101001001")] == ["v-1", "v-4"]
    assert [x.id for x in await vols.page(None, 0, 10, within="110101001")] == ["v-1", "v-2", "v-4", "v-5"]
    assert [x.id for x in await vols.page(None, 1, 2, within="110101001")] == ["v-2", "v-4"]
    assert [x.id for x in await vols.page("110101001002", 0, 10, within="110101001")] == ["v-2"]
    assert await vols.page("110101002001", 0, 10, within="110101001") == []
    assert await vols.page(None, 0, 10, within="1101010010.") == []  # "." is no wildcard
    assert [x.id for x in await vols.page(None, 0, 10, within="demo-")] == ["v-6"]
    assert [x.id for x in await vols.page(None, 0, 10)] == ["v-1", "v-2", "v-3", "v-4", "v-5", "v-6"]
    assert [x.id for x in await vols.members_of("School", within="110101001")] == ["v-1"]
    assert [x.id for x in await vols.members_of("School")] == ["v-1", "v-3"]
    assert await vols.work_units(within="110101001") == ["Court", "School", "Tax"]
    assert await vols.work_units(within="110101002") == ["School"]
    assert await vols.work_units(within="119999") == []


async def test_new_matches_publish_once_and_a_repeat_publishes_the_same_events_again(subject):
    matches = subject.store.matches
    m = offered_match()
    assert await matches.add_new([m]) == {m.request_id}
    assert subject.published() == ["offered", "offered"] and m.events == []
    again = Match.requested(requested(m.request_id), [])
    assert await matches.add_new([again]) == set()
    assert subject.published() == ["offered"] * 4  # the first insert's events, published again
    stored = await matches.get(m.request_id)
    assert (stored.offers, stored.visit, stored.applied, stored.version) == (m.offers, m.visit, m.applied, 1)


async def test_a_match_save_is_guarded_and_publishes_its_events(subject):
    matches = subject.store.matches
    m = offered_match()
    await matches.add_new([m])
    stale = await matches.get(m.request_id)
    m.accept("v-1", m.offers[0].offer_id, NOW)
    assert await matches.save(m) and m.version == 2
    assert subject.published()[2:] == ["accepted", "offer_withdrawn"]
    stale.decline("v-2", stale.offers[1].offer_id, None, NOW, Shortlist([]), TTL)
    assert await matches.save(stale) is False
    assert subject.published()[2:] == ["accepted", "offer_withdrawn"]
    assert (await matches.get(m.request_id)).winner == "v-1"


async def test_open_offers_and_due_expiries_are_found(subject):
    matches = subject.store.matches
    m = offered_match()
    await matches.add_new([m])
    assert [x.request_id for x in await matches.offered_to("v-2")] == [m.request_id]
    assert await matches.due(NOW, 10) == []
    assert await matches.due(NOW + TTL, 10) == [m.request_id]
    m.accept("v-1", m.offers[0].offer_id, NOW)
    await matches.save(m)
    assert await matches.offered_to("v-2") == []
    assert await matches.due(NOW + TTL, 10) == []


async def test_schedules_are_claimed_then_guarded(subject):
    schedules = subject.store.schedules
    s = await schedules.get("v-1")
    assert s.version == 0 and s.bookings == []
    s.hold("r-1", NOW + timedelta(days=1), 2, False, 10, _tz(), NOW)
    assert await schedules.save(s)
    twin = Schedule("v-1")
    twin.hold("r-2", NOW + timedelta(days=2), 2, False, 10, _tz(), NOW)
    assert await schedules.save(twin) is False  # the id was claimed meanwhile
    stale = await schedules.get("v-1")
    s.settle("r-1", "booked", NOW)
    assert await schedules.save(s)
    stale.settle("r-1", "released", NOW)
    assert await schedules.save(stale) is False
    assert [b.state for b in (await schedules.get("v-1")).bookings] == ["booked"]
    assert await schedules.with_holds() == []
    assert set(await schedules.many(["v-1", "v-9"])) == {"v-1", "v-9"}


async def test_hours_entries_are_claimed_and_found_by_volunteer_and_month(subject):
    m = offered_match()
    m.accept("v-1", m.offers[0].offer_id, NOW)
    hours = subject.store.hours
    e = HoursEntry.check_in(m, "v-1", NOW, _tz())
    assert await hours.add(e)
    assert await hours.add(HoursEntry.check_in(m, "v-1", NOW, _tz())) is False
    e.complete(m, "done", NOW + timedelta(hours=1))
    assert await hours.save(e)
    assert subject.published() == ["service_delivered"]
    assert [x.id for x in await hours.of_volunteer("v-1", e.month)] == [e.id]
    assert await hours.of_volunteer("v-1", "1999-01") == []
    assert [x.hours for x in await hours.of_month(e.month)] == [1.0]


async def test_the_catalogue_keeps_the_newest_revision(subject):
    cat = subject.store.catalogue
    p = cat_ev.ServiceDefined(request_id="care", service_code="care", name_zh="照護", name_en="Care",
                              group="volunteer", handled_by=("volunteer",), needs_volunteer=True,
                              required_qualifications=("first_aid",), revision=2, changed_at=NOW,
                              time_limits={"response_hours": 4, "resolution_hours": 48})
    assert (await cat.put(ServiceInfo.defined(p))).required_qualifications == ["first_aid"]
    older = ServiceInfo("care", 1, [])
    assert (await cat.put(older)).revision == 2
    assert [s.code for s in await cat.all()] == ["care"]


def _tz():
    from zoneinfo import ZoneInfo

    return ZoneInfo("Asia/Shanghai")
