"""Intake's handlers on the in-memory fakes: every command and the lifecycle fold, in milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from intake_test_helpers import BASE_LAT, BASE_LON, handlers_on_fakes

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.grid import RequestAssigned, RequestResolved
from civicgrid_contracts.values import AreaPath
from civicgrid_intake.domain.commands import RateRequest, SubmitRequest
from civicgrid_intake.domain.errors import Conflict, Forbidden, IdempotencyConflict, NotFound, UnknownService
from civicgrid_runtime.auth import Principal

AREA = AreaPath(district="110105", street="110105001", community="110105001001", grid="110105001001001")


def cmd(lat: float = BASE_LAT, lon: float = BASE_LON, **over) -> SubmitRequest:
    b = {"service_code": "public_facility", "location": {"lat": lat, "lon": lon}, "description": "Light broken",
         "attributes": {"facility": "streetlight"}, "channel": "app", **over}
    return SubmitRequest(**b)


def types(h) -> list[str]:
    return [e.type.rsplit(".", 1)[-1] for e in h.requests.published]


def grid(payload) -> Envelope:
    return Envelope.wrap(payload, source="/civicgrid/grid")


def resolved(rid: str) -> Envelope:
    return grid(RequestResolved(request_id=rid, staff_id="s", resolution_note="Fixed", resolved_at=datetime.now(UTC)))


@pytest.fixture
def h():
    return handlers_on_fakes()


async def test_a_submission_is_stored_with_its_deadlines_and_publishes_one_received_event(h):
    res = await h.submit(cmd(contact={"name": "Li", "phone": "13912345678"}))
    doc = await h.get(res.request_id)
    [received] = h.requests.published
    assert received.type == "civicgrid.request.received" and received.subject == res.request_id
    assert doc["status"] == "received" and doc["expected_at"] == received.data.resolution_due
    assert doc["response_due"] == received.data.response_due and res.answer["status"] == "received"
    assert doc["contact_enc"] and "13912345678" not in str(received.to_document())
    assert doc["history"][0]["event_id"] == received.id and not res.replayed


async def test_an_unknown_service_is_refused(h):
    with pytest.raises(UnknownService):
        await h.submit(cmd(service_code="no_such_service"))


async def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(h):
    first = await h.submit(cmd(), idempotency_key="k-1")
    again = await h.submit(cmd(), idempotency_key="k-1")
    assert again.replayed and again.request_id == first.request_id and again.answer == first.answer
    assert len(h.requests.published) == 1
    with pytest.raises(IdempotencyConflict):
        await h.submit(cmd(description="something else"), idempotency_key="k-1")


async def test_a_nearby_duplicate_follows_the_open_request(h):
    parent = await h.submit(cmd())
    dup = await h.submit(cmd(lat=BASE_LAT + 0.0001))
    assert dup.answer["status"] == "merged" and dup.answer["duplicate_of"] == parent.request_id
    assert dup.answer["followers"] == 2
    p = await h.requests.get(parent.request_id)
    assert p.followers_ids == [dup.request_id] and p.followers == 2
    assert types(h) == ["received", "received", "merged"]
    # the link is idempotent (the relay's recovery may make it again)
    await h.link_follower(dup.request_id, parent.request_id)
    assert (await h.requests.get(parent.request_id)).followers_ids == [dup.request_id]


async def test_a_resolved_request_is_not_followed(h):
    parent = await h.submit(cmd())
    await h.lifecycle.apply_events([resolved(parent.request_id)])
    dup = await h.submit(cmd(lat=BASE_LAT + 0.0001))
    assert dup.answer["status"] == "received" and dup.answer["duplicate_of"] is None


async def test_recovery_links_a_merged_request_its_crash_left_unlinked(h):
    parent = await h.submit(cmd())
    dup = await h.submit(cmd(lat=BASE_LAT + 0.0001))
    p = await h.requests.get(parent.request_id)
    p.drop_follower(dup.request_id, at=datetime.now(UTC))
    assert await h.requests.save(p)
    merged = [e for e in h.requests.published if e.type.endswith("merged")]
    await h.recover([{"_id": dup.request_id, "_outbox": {"k1": merged[0].to_document()}}])
    assert (await h.requests.get(parent.request_id)).followers_ids == [dup.request_id]


async def test_unmerge_restores_the_request_and_drops_it_from_the_followers(h):
    parent = await h.submit(cmd())
    dup = await h.submit(cmd(lat=BASE_LAT + 0.0001))
    staff = Principal(sub="op-1", role="operator", area="")
    view = await h.unmerge(dup.request_id, staff, "different light")
    assert view["status"] == "received" and view["duplicate_of"] is None
    assert (await h.requests.get(parent.request_id)).followers_ids == []
    assert types(h)[-1] == "unmerged"
    with pytest.raises(Conflict):
        await h.unmerge(dup.request_id, staff, "again")


async def test_rating_reopens_or_closes_only_a_resolved_request(h):
    a, b = await h.submit(cmd()), await h.submit(cmd(lat=BASE_LAT + 0.01))
    with pytest.raises(Conflict):
        await h.rate(a.request_id, RateRequest(rating="satisfied"))
    await h.lifecycle.apply_events([resolved(a.request_id), resolved(b.request_id)])
    reopened = await h.rate(a.request_id, RateRequest(rating="unsatisfied", comment="still dark"))
    assert reopened["status"] == "reopened" and reopened["reopen_count"] == 1
    closed = await h.rate(b.request_id, RateRequest(rating="satisfied"))
    assert closed["status"] == "closed" and closed["rating"]["rating"] == "satisfied"
    assert types(h)[-4:] == ["rated", "reopened", "rated", "closed"]


async def test_lifecycle_events_fold_once_each_in_order(h):
    rid = (await h.submit(cmd())).request_id
    assigned = grid(RequestAssigned(request_id=rid, area=AREA, assignee_id="w-1", holder="A", reason="x",
                                    map_version=1, assigned_at=datetime.now(UTC)))
    await h.lifecycle.apply_events([assigned, assigned])
    await h.lifecycle.apply_events([assigned])
    doc = await h.get(rid)
    assert doc["status"] == "assigned" and doc["area_code"] == AREA.grid
    assert [e["status"] for e in doc["history"]] == ["received", "assigned"]
    await h.lifecycle.apply_events([grid(RequestAssigned(request_id="not-ours", area=AREA, assignee_id="w", holder="A",
                                               reason="x", map_version=1, assigned_at=datetime.now(UTC)))])


async def test_a_lost_version_race_is_retried_on_the_fresh_state(h):
    rid = (await h.submit(cmd())).request_id
    real_save, raced = h.requests.save, []

    async def save_after_a_rival(sub):
        if not raced:  # another writer saves first: ours must reload and apply on top
            raced.append(1)
            rival = await h.requests.get(rid)
            rival.apply(resolved(rid))
            assert await real_save(rival)
        return await real_save(sub)

    h.requests.save = save_after_a_rival
    await h.lifecycle.apply_events([grid(RequestAssigned(request_id=rid, area=AREA, assignee_id="w", holder="A", reason="x",
                                               map_version=1, assigned_at=datetime.now(UTC)))])
    doc = await h.get(rid)
    assert doc["status"] == "resolved" and len(doc["history"]) == 3  # both events, none lost


async def test_contact_reads_are_logged_and_kept_to_the_area(h):
    rid = (await h.submit(cmd(contact={"phone": "13912345678"}))).request_id
    await h.lifecycle.apply_events([grid(RequestAssigned(request_id=rid, area=AREA, assignee_id="w", holder="A", reason="x",
                                               map_version=1, assigned_at=datetime.now(UTC)))])
    out = await h.read_contact(rid, Principal(sub="op", role="operator", area=""), "call back")
    assert out["contact"] == {"phone": "13912345678"}
    with pytest.raises(Forbidden):
        await h.read_contact(rid, Principal(sub="w2", role="grid_worker", area="110106"), "curious")
    assert [e["reason"] for e in await h.access_log(rid)] == ["call back"]
    await h.erase_contact(rid)
    assert (await h.read_contact(rid, Principal(sub="op", role="operator", area=""), "check"))["erased"]
    with pytest.raises(NotFound):
        await h.erase_contact("nope")


async def test_search_filters_and_pages_newest_first(h):
    ids = [(await h.submit(cmd(lat=BASE_LAT + i * 0.01))).request_id for i in range(3)]
    ids.sort(key=lambda i: (h.requests.documents[i]["received_at"], i))  # the same millisecond: by id
    await h.lifecycle.apply_events([resolved(ids[0])])
    assert [d["_id"] for d in await h.search(statuses=["received"])] == ids[:0:-1]
    page = await h.search(limit=2)
    rest = await h.search(after=(page[-1]["received_at"], page[-1]["_id"]), limit=2)
    assert [d["_id"] for d in page + rest] == ids[::-1]
    assert [d["_id"] for d in await h.search(ids=[ids[1], "nope"])] == [ids[1]]


async def test_resident_reads_need_the_token(h):
    res = await h.submit(cmd())
    assert (await h.get_for_resident(res.request_id, res.token))["_id"] == res.request_id
    assert (await h.by_token(res.token))["_id"] == res.request_id
    with pytest.raises(NotFound):
        await h.get_for_resident(res.request_id, "forged")
