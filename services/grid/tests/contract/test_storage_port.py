"""ONE suite, two adapters: every assertion about grid's storage port (``domain.ports``) runs
against the in-memory fake and against the real store (MongoDB protocol, the runtime's outbox), so
the fake the unit tests use cannot drift from what the store does."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.access import AdminChanged
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
        requests, staff, roster = MemoryRequests(), MemoryStaff(), MemoryRoster()
        staff.published = roster.published = requests.published  # one bus
        yield Stores(requests, staff, roster, MemoryCatalogue(), requests.published)
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
    requests, staff, roster = RequestRepository(db), StaffRepository(db), RosterRepository(db)
    requests.relay = staff.relay = roster.relay = OutboxRelay(publisher, [requests.col, staff.col, roster.posts])
    await requests.ensure_indexes()
    return Stores(requests, staff, roster, CatalogueRepository(db), publisher.published, db)


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
    member = await stores.staff.member("A1")
    member.duty, member.leave_until, member.limit = "leave", "2026-12-03", 5
    assert await stores.staff.save_member(member)  # a profile write leaves the load counter alone
    a = await stores.staff.get("A1")
    assert (a["duty"], a["limit"], a["load"], sorted(a["holding"])) == ("leave", 5, 2, ["r1", "r4"])


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


# ------------------------------------------------------------------------------ the roster's documents


def admin_event(target: str) -> Envelope:
    return Envelope.wrap(AdminChanged(request_id=f"roster:{target}", staff_id="admin", role="admin",
                                      action="roster.post", target=target), source="/test")


async def published_soon(stores: Stores, event_id: str) -> bool:
    """An insert's events go out from the relay's task, right after the write."""
    for _ in range(100):
        if event_id in {e.id for e in stores.published}:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_a_post_change_is_guarded_by_its_version_and_carries_its_event(stores):
    await stores.roster.upsert("posts", [{"_id": "pg1-general", "area": "g1", "line": "general", "level": "grid",
                                          "a": "A1", "b": "B1"}])
    first, second = await stores.roster.post("pg1-general"), await stores.roster.post("pg1-general")
    assert first.version == 1  # a roster import moves the version on
    first.b = "B2"
    ev = admin_event("pg1-general")
    assert await stores.roster.save_post(first, [ev])
    second.b = "B3"
    assert not await stores.roster.save_post(second, [admin_event("pg1-general")])
    stored = await stores.roster.post("pg1-general")
    assert (stored.a, stored.b, stored.version) == ("A1", "B2", 2)
    assert [e.id for e in stores.published] == [ev.id]
    assert [p.id for p in await stores.roster.posts_held_by("B2")] == ["pg1-general"]
    assert await stores.roster.posts_held_by("B1") == []


async def test_posts_and_staff_are_listed_under_an_area_prefix(stores):
    await stores.roster.upsert("posts", [
        {"_id": f"p{a}-general", "area": a, "line": "general", "level": "grid", "a": "A1"}
        for a in ("110101001001001", "110101001001002", "110101001002001")])
    await stores.staff.upsert_many([{"_id": sid, "name": sid, "role": "grid_worker", "area": area, "duty": "on"}
                                    for sid, area in (("s2", "110101001001002"), ("s1", "110101001001001"),
                                                      ("s3", "110101001002001"))])
    assert [p.area for p in await stores.roster.posts_under("110101001001")] == ["110101001001001",
                                                                                 "110101001001002"]
    assert [m.id for m in await stores.staff.members_under("110101001001")] == ["s1", "s2"]
    assert len(await stores.staff.members_under("110101")) == 3


async def test_a_new_member_claims_the_id_and_a_profile_change_is_version_guarded(stores):
    from civicgrid_grid.domain.roster import StaffMember

    m = StaffMember.new("s9", name="New Worker", role="grid_worker", area="110101001001001", lines=["care"],
                        limit=7)
    created = admin_event("s9")
    assert await stores.staff.create(m, [created]) and m.version == 1
    assert not await stores.staff.create(StaffMember.new("s9", name="Other", role="grid_worker",
                                                         area="110101001001001", lines=[], limit=1))
    assert await published_soon(stores, created.id)
    first, second = await stores.staff.member("s9"), await stores.staff.member("s9")
    assert (first.name, first.lines, first.load, first.version) == ("New Worker", ("care",), 0, 1)
    first.limit = 9
    assert await stores.staff.save_member(first)
    second.duty = "off"
    assert not await stores.staff.save_member(second)
    stored = await stores.staff.member("s9")
    assert (stored.limit, stored.duty, stored.version) == (9, "on", 2)


@pytest.mark.infra
async def test_older_staff_and_post_documents_are_read_and_saved_in_the_current_shape(fresh_db):
    """Shape 1 had no version and no training record: read as version 0, trained for every line."""
    stores = await _mongo_stores(fresh_db)
    await stores.raw["staff"].insert_one({"_id": "s1", "name": "Old", "role": "grid_worker",
                                          "area": "110101001001001", "level": "grid", "duty": "on",
                                          "leave_until": None, "limit": 20, "load": 1, "holding": ["r1"]})
    await stores.raw["posts"].insert_one({"_id": "pg-general", "area": "110101001001001", "line": "general",
                                          "level": "grid", "a": "s1", "b": "s2"})
    m = await stores.staff.member("s1")
    assert (m.version, m.lines, m.active, m.away_until) == (0, ("general", "care"), True, None)
    m.duty = "off"
    assert await stores.staff.save_member(m)
    raw = await stores.raw["staff"].find_one({"_id": "s1"})
    assert (raw["schema_version"], raw["version"], raw["lines"], raw["load"]) == (2, 1, ["general", "care"], 1)
    post = await stores.roster.post("pg-general")
    assert post.version == 0
    post.b = None
    assert await stores.roster.save_post(post)
    raw = await stores.raw["posts"].find_one({"_id": "pg-general"})
    assert (raw["schema_version"], raw["version"], raw["b"]) == (2, 1, None)
