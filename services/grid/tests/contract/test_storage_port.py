"""ONE suite, two adapters: every assertion about grid's storage port (``domain.ports``) runs
against the in-memory fake and against the real store (MongoDB protocol, the runtime's outbox), so
the fake the unit tests use cannot drift from what the store does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.grid import RequestNoted
from civicgrid_grid.adapters.memory import MemoryCatalogue, MemoryRequests, MemoryRoster, MemoryStaff
from civicgrid_grid.adapters.repos import (
    CatalogueRepository,
    RequestRepository,
    RosterRepository,
    StaffRepository,
)
from civicgrid_grid.domain.request import RequestCase
from civicgrid_runtime.store import OutboxRelay, pack_json
from civicgrid_runtime.testing import drop_quietly, unique

from .received_data import received_data

T = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class RecordingPublisher:
    """Stands in for the broker: the suite is about what the store decides to publish."""

    def __init__(self) -> None:
        self.published: list[Envelope] = []

    async def publish_many(self, events) -> None:
        self.published += list(events)


@dataclass
class Stores:
    requests: Any
    staff: Any
    roster: Any
    catalogue: Any
    published: list[Envelope]
    raw: Any = None  # the real store's database (None for the fake)


@pytest.fixture(params=["memory", pytest.param("mongo", marks=pytest.mark.infra)])
def real_store(request):
    """The real store's infrastructure for the "mongo" run (resolved outside the event loop)."""
    return request.getfixturevalue("infra") if request.param == "mongo" else None


@pytest_asyncio.fixture
async def stores(real_store):
    if real_store is None:
        requests = MemoryRequests()
        yield Stores(requests, MemoryStaff(), MemoryRoster(), MemoryCatalogue(), requests.published)
        return
    client = AsyncMongoClient(real_store.mongodb, tz_aware=True)
    name = unique("grid_port")
    try:
        yield await _mongo_stores(client[name])
    finally:
        await drop_quietly(client, name)
        await client.close()


async def _mongo_stores(db) -> Stores:
    publisher = RecordingPublisher()
    requests = RequestRepository(db)
    requests.relay = OutboxRelay(publisher, [requests.col])
    await requests.ensure_indexes()
    return Stores(requests, StaffRepository(db), RosterRepository(db), CatalogueRepository(db), publisher.published,
                  db)


def new_case(rid: str, **kw) -> RequestCase:
    return RequestCase(id=rid, status=kw.pop("status", "assigned"), assignee_id=kw.pop("assignee_id", "A1"),
                       priority=kw.pop("priority", "normal"), due_response=kw.pop("due_response", T),
                       area={"grid": "g1"}, applied=["cause-1"], **kw)


def noted(rid: str, text: str = "n") -> Envelope:
    return Envelope.wrap(RequestNoted(request_id=rid, staff_id="s1", note=text, noted_at=T), source="/test")


async def test_insert_new_publishes_once_and_a_redelivery_publishes_the_kept_events_again(stores):
    ev = noted("r1")
    assert await stores.requests.insert_new([(new_case("r1"), [ev])]) == {"r1"}
    assert await stores.requests.insert_new([(new_case("r1", assignee_id="B1"), [ev])]) == set()
    assert [e.id for e in stores.published] == [ev.id, ev.id]
    case = await stores.requests.get("r1")
    assert (case.assignee_id, case.version, case.applied) == ("A1", 1, ["cause-1"])


async def test_save_is_guarded_by_the_version_read(stores):
    await stores.requests.insert_new([(new_case("r1"), [])])
    first, second = await stores.requests.get("r1"), await stores.requests.get("r1")
    first.accept("A1", T)
    assert await stores.requests.save(first, [noted("r1", "a")])
    second.reject("A1", "x", T)
    assert not await stores.requests.save(second, [noted("r1", "b")])
    stored = await stores.requests.get("r1")
    assert (stored.status, stored.version) == ("accepted", 2)
    assert [e.data.note for e in stores.published] == ["a"]


async def test_save_applies_a_cause_once(stores):
    await stores.requests.insert_new([(new_case("r1"), [])])
    case = await stores.requests.get("r1")
    case.escalations.append("e1")
    assert await stores.requests.save(case, cause_id="cause-2")
    again = await stores.requests.get("r1")
    again.escalations.append("e1")
    assert not await stores.requests.save(again, cause_id="cause-2")
    assert (await stores.requests.get("r1")).escalations == ["e1"]


async def test_save_many_writes_each_guarded(stores):
    await stores.requests.insert_new([(new_case(r, status="merged"), []) for r in ("r1", "r2")])
    a, b = (await stores.requests.get_many(["r1", "r2"])).values()
    stale = await stores.requests.get("r2")
    stale.attention.append("x")
    assert await stores.requests.save(stale)
    a.reopened_reason = b.reopened_reason = "m"
    await stores.requests.save_many([(a, "m1"), (b, "m2")])
    after = await stores.requests.get_many(["r1", "r2"])
    assert after["r1"].applied == ["cause-1", "m1"] and after["r2"].applied == ["cause-1"]


async def test_queues_hold_open_requests_urgent_first_then_by_deadline(stores):
    later = T.replace(hour=12)
    await stores.requests.insert_new([
        (new_case("late"), []), (new_case("later", due_response=later), []),
        (new_case("urgent", priority="urgent", due_response=later), []),
        (new_case("done", status="resolved"), []), (new_case("other", assignee_id="B1"), []),
        (new_case("dep", dispatched_to=["chengguan"]), [])])
    held = [c.id for c in await stores.requests.open_held_by("A1")]
    assert held[0] == "urgent" and held[-1] == "later" and set(held) == {"urgent", "late", "dep", "later"}
    assert [c.id for c in await stores.requests.open_dispatched_to("chengguan")] == ["dep"]


async def test_load_reservations_hold_the_limit_and_count_once(stores):
    await stores.staff.upsert_many([{"_id": "A1", "duty": "on", "limit": 2}])
    granted = await stores.staff.reserve_many([("A1", "r1", True), ("A1", "r2", True), ("A1", "r3", True)])
    assert granted == {("A1", "r1"), ("A1", "r2")}
    assert await stores.staff.reserve_many([("A1", "r1", True), ("A1", "r4", False)]) == {("A1", "r1"),
                                                                                          ("A1", "r4")}
    await stores.staff.release("A1", "r2")
    await stores.staff.release("A1", "r2")  # twice: frees one unit
    a = await stores.staff.get("A1")
    assert (a["load"], sorted(a["holding"])) == (2, ["r1", "r4"])
    await stores.staff.upsert_many([{"_id": "A1", "duty": "off", "limit": 2}])  # a roster import keeps the load
    assert (await stores.staff.get("A1"))["load"] == 2
    assert (await stores.staff.set_duty("A1", duty="leave", leave_until="2026-12-03", limit=5))["limit"] == 5


async def test_roster_and_catalogue(stores):
    await stores.roster.upsert("posts", [{"_id": "pg1-general", "area": "g1", "line": "general", "a": "A1"}])
    await stores.roster.upsert("chain", [{"_id": "grid:g1", "level": "grid", "area": "g1", "staff_id": "H1"}])
    await stores.roster.upsert("departments", [{"_id": "chengguan", "name": "Urban management"}])
    assert list(await stores.roster.posts_for(["g1"], ["general"])) == [("g1", "general")]
    assert await stores.roster.chain_for(["grid:g1", "grid:g2"]) == {"grid:g1": "H1"}
    assert await stores.roster.known_departments(["chengguan", "x"]) == {"chengguan"}
    assert [d["_id"] for d in await stores.roster.list_departments()] == ["chengguan"]
    assert await stores.catalogue.apply({"_id": "repair", "revision": 2, "group": "a"})
    assert not await stores.catalogue.apply({"_id": "repair", "revision": 1, "group": "b"})
    assert (await stores.catalogue.get_many(["repair"]))["repair"]["group"] == "a"


@pytest.mark.infra
async def test_an_older_document_is_read_and_saved_in_the_current_shape(fresh_db):
    """Only the real store holds documents written by earlier versions."""
    stores = await _mongo_stores(fresh_db)
    await stores.raw["requests"].insert_one({"_id": "r1", "received": pack_json(received_data("r1")),
                                             "status": "assigned", "assignee_id": "A1", "area": {"grid": "g1"},
                                             "_applied": ["c"]})
    case = await stores.requests.get("r1")
    assert case.version == 0 and case.due_response is not None
    case.accept("A1", T)
    assert await stores.requests.save(case)
    raw = await stores.raw["requests"].find_one({"_id": "r1"})
    assert raw["schema_version"] == 2 and raw["version"] == 1 and "received" not in raw
