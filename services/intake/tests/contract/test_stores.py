"""ONE contract for intake's store ports, run against the in-memory fakes AND the real store.

The handlers' unit tests trust the fakes; these assertions are what makes that trust earned: every
test here runs twice, ``[memory]`` without infrastructure and ``[mongo]`` on the real
MongoDB-protocol store (with the runtime's outbox relay, publishing to a recording publisher).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.grid import RequestResolved
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_contracts.values import Location, TimeLimits
from civicgrid_intake.adapters import documents
from civicgrid_intake.adapters.memory import InMemoryApiKeys, InMemoryRequests
from civicgrid_intake.domain.submission import DuplicateCandidate, Submission
from civicgrid_intake.ports import AlreadyStored
from civicgrid_runtime.calendar import DEFAULT_CALENDAR
from civicgrid_runtime.testing import eventually

T0 = datetime(2026, 11, 27, 8, 0, 0, 123000, tzinfo=UTC)


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[Envelope] = []

    async def publish_many(self, events) -> None:
        self.published += list(events)


class Backend:
    def __init__(self, requests, api_keys, published, raw_insert) -> None:
        self.requests, self.api_keys = requests, api_keys
        self._published = published
        #: store a document as it is (an older shape) in the requests collection
        self.raw_insert = raw_insert

    async def published(self, n: int) -> list[str]:
        """The ids of the events published, once there are ``n`` (the real relay publishes soon after)."""
        async def enough() -> bool:
            return len(self._published()) >= n

        await eventually(enough, timeout=10)
        return [e.id for e in self._published()]


@pytest.fixture(params=["memory", pytest.param("mongo", marks=pytest.mark.infra)])
def kind(request):
    """("memory", None) or ("mongo", the real infrastructure, resolved here outside the event loop)."""
    return request.param, request.getfixturevalue("infra") if request.param == "mongo" else None


@pytest_asyncio.fixture
async def backend(kind):
    name, infra = kind
    if name == "memory":
        reqs = InMemoryRequests()

        async def raw(doc):
            reqs.documents[doc["_id"]] = doc

        yield Backend(reqs, InMemoryApiKeys(), lambda: reqs.published, raw)
        return
    from pymongo import AsyncMongoClient

    from civicgrid_intake.adapters.repository import Collections, MongoApiKeys, MongoRequests
    from civicgrid_runtime.store import OutboxRelay
    from civicgrid_runtime.testing import unique

    client = AsyncMongoClient(infra.mongodb, tz_aware=True)
    db = client[unique("intake_contract")]
    cols = Collections(db)
    await cols.ensure_indexes()
    publisher = RecordingPublisher()
    relay = OutboxRelay(publisher, [cols.requests])
    yield Backend(MongoRequests(cols.requests, relay), MongoApiKeys(cols.api_keys),
                  lambda: publisher.published, cols.requests.insert_one)
    await relay.stop()
    await client.drop_database(db.name)
    await client.close()


def new(rid: str, *, at: datetime = T0, parent: DuplicateCandidate | None = None, service: str = "sanitation") -> Submission:
    received = RequestReceived.starting_clocks(
        DEFAULT_CALENDAR, request_id=rid, service_code=service, service_name="Sanitation", service_group="city",
        handled_by=("grid",), departments=(), needs_volunteer=False,
        time_limits=TimeLimits(response_hours=2, resolution_hours=48), location=Location(lat=39.9, lon=116.4),
        description="bins", attributes={"waste_type": "household"}, channel="app", received_at=at,
        duplicate_of=parent.request_id if parent else None)
    details = {k: None for k in documents.DETAIL_FIELDS} | {
        "service_code": service, "service_name": "Sanitation", "location": {"lat": 39.9, "lon": 116.4},
        "attributes": {"waste_type": "household"}, "channel": "app", "description": "bins",
        "time_limits": {"response_hours": 2.0, "resolution_hours": 48.0, "calendar": "natural"}}
    return Submission.receive(received, source="/test", details=details, parent=parent,
                              answer={"request_id": rid}, idem_hash=None, contact_enc=None)


def same(a: Submission, b: Submission) -> None:
    for f in ("request_id", "details", "received_at", "state", "response_due", "duplicate_of", "followers_ids",
              "history", "answer", "reopen_count", "rating", "applied", "version"):
        assert getattr(a, f) == getattr(b, f), f


async def test_an_added_request_reads_back_as_it_was_and_publishes_its_events_once(backend):
    sub = new("r-1", parent=DuplicateCandidate("r-0", 12.3, 1))
    expected = [e.id for e in sub.pending_events]
    await backend.requests.add(sub)
    assert sub.pending_events == []
    got = await backend.requests.get("r-1")
    same(got, sub)
    assert await backend.published(2) == expected
    assert await backend.requests.get("nope") is None


async def test_a_request_id_is_added_once(backend):
    await backend.requests.add(new("r-1"))
    with pytest.raises(AlreadyStored):
        await backend.requests.add(new("r-1"))


async def test_a_save_holds_only_on_the_version_it_loaded(backend):
    await backend.requests.add(new("r-1"))
    a, b = await backend.requests.get("r-1"), await backend.requests.get("r-1")
    a.apply(Envelope.wrap(RequestResolved(request_id="r-1", staff_id="s", resolution_note="done", resolved_at=T0),
                          source="/grid", time=T0))
    a.rate("unsatisfied", None, source="/test", at=T0 + timedelta(seconds=1))
    assert await backend.requests.save(a) and a.version == 2
    b.erase_contact(at=T0)
    assert not await backend.requests.save(b)  # lost the race: nothing of it is stored
    got = await backend.requests.get("r-1")
    same(got, a)
    assert got.status == "reopened" and got.contact_erased_at is None
    assert len(await backend.published(3)) == 3  # received, then rated and reopened


async def test_views_hide_the_stores_own_fields(backend):
    await backend.requests.add(new("r-1"))
    view = await backend.requests.read("r-1")
    assert view["_id"] == "r-1" and view["status"] == "received" and view["followers"] == 1
    assert not {"_outbox", "_outbox_pending", "_applied", "version", "schema_version", "idem_hash"} & set(view)
    assert await backend.requests.read("nope") is None


async def test_search_orders_newest_first_and_filters(backend):
    for i in range(4):
        await backend.requests.add(new(f"r-{i}", at=T0 + timedelta(minutes=i), service="sanitation" if i % 2 else
                                       "greening"))
    assert [d["_id"] for d in await backend.requests.search()] == ["r-3", "r-2", "r-1", "r-0"]
    assert [d["_id"] for d in await backend.requests.search(service_codes=["sanitation"])] == ["r-3", "r-1"]
    assert [d["_id"] for d in await backend.requests.search(start=T0 + timedelta(minutes=1),
                                                            end=T0 + timedelta(minutes=3))] == ["r-2", "r-1"]
    assert [d["_id"] for d in await backend.requests.search(after=(T0 + timedelta(minutes=2), "r-2"))] == \
        ["r-1", "r-0"]
    assert [d["_id"] for d in await backend.requests.search(ids=["r-2", "x", "r-0"])] == ["r-2", "r-0"]
    assert sorted(await backend.requests.get_many(["r-1", "r-2", "x"])) == ["r-1", "r-2"]


async def test_a_request_stored_in_the_oldest_shape_reads_through_the_upcaster(backend):
    """Version 0: no schema_version, intake's old relay token, no response_due nor follower list."""
    await backend.raw_insert({
        "_id": "old-1", "_ob": "token", "service_code": "sanitation", "service_name": "Sanitation",
        "location": {"lat": 39.9, "lon": 116.4}, "channel": "app", "received_at": T0, "updated_at": T0,
        "expected_at": T0 + timedelta(days=2), "status": "assigned", "status_notes": "Assigned",
        "area_keys": ["110105"], "open": True, "followers": 1,
        "history": [{"event_id": "e-1", "type": "civicgrid.request.received", "at": T0, "status": "received",
                     "note": "Request received"}], "version": 3})
    old = await backend.requests.get("old-1")
    assert old.status == "assigned" and old.followers_ids == [] and old.response_due is None and old.version == 3
    old.add_follower("f-1", at=T0)
    assert await backend.requests.save(old)
    view = await backend.requests.read("old-1")
    assert view["followers"] == 2 and "_ob" not in view
    assert "imported_from" in view and view["imported_from"] is None  # version 2's field, written by the save


async def test_api_keys_are_checked_by_hash(backend):
    key = await backend.api_keys.mint("partner")
    assert (await backend.api_keys.check(key))["name"] == "partner"
    assert await backend.api_keys.check("o311_wrong") is None and await backend.api_keys.check(None) is None
    assert await backend.api_keys.mint("tests", key="fixed") == "fixed"


async def test_concurrent_changes_of_one_request_lose_nothing(backend):
    """Load-change-save with the version guard, many writers at once: every change lands once."""
    import asyncio

    from civicgrid_intake.handlers import change_request

    await backend.requests.add(new("p"))
    await asyncio.gather(*(change_request(backend.requests, "p", lambda s, i=i: s.add_follower(f"f-{i}", at=T0))
                           for i in range(12)))
    got = await backend.requests.get("p")
    assert sorted(got.followers_ids) == sorted(f"f-{i}" for i in range(12)) and got.version == 13
