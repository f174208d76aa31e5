"""The registry is area-limited (domain/scope.py, docs/adr/0701): staff scoped to an area list, read,
change and verify only the volunteers living there, and reach only the matches and hours entries of
requests located there; lists and reports are narrowed, a record outside is refused (403)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from matching_helpers import delivery, on_fake, requested, volunteer_body  # noqa: E402

from civicgrid_matching.domain import errors  # noqa: E402
from civicgrid_matching.domain.index import MatchQuery  # noqa: E402
from civicgrid_matching.domain.scope import DISTRICT, AreaScope  # noqa: E402
from civicgrid_matching.handlers import consumed, hours, offers, queries, registry  # noqa: E402
from civicgrid_matching.schemas import VolunteerCreate  # noqa: E402

STREET = "110101001"
HOME = STREET + "001"  # a community of that street
NEIGHBOUR = STREET + "002"  # another community of the same street
ELSEWHERE = "110101002001"  # a community of another street
GRID_WORKER = AreaScope.of("grid_worker", HOME + "003")  # scoped to a grid of HOME
FOREIGN = AreaScope.of("supervisor", ELSEWHERE)


def profile(vid: str, community: str, **kw) -> dict:
    return VolunteerCreate.model_validate(volunteer_body(vid, community=community, **kw)).model_dump(
        mode="python", exclude={"id"})


async def registry_of_three():
    ctx = on_fake()
    for vid, community in (("v-home", HOME), ("v-neighbour", NEIGHBOUR), ("v-elsewhere", ELSEWHERE)):
        await registry.register(ctx, profile(vid, community, north_m=100, party_member=True, work_unit="School"),
                                "staff-0", vid, scope=DISTRICT)
    return ctx


async def listed(ctx, scope: AreaScope, community: str | None = None) -> list[str]:
    return [v.id for v in await queries.volunteers(ctx, community, 0, 100, scope=scope)]


def test_a_scope_is_the_tokens_area_widened_to_its_community_and_admin_reaches_everything():
    assert AreaScope.of("grid_worker", HOME + "003") == AreaScope(HOME)
    assert AreaScope.of("supervisor", STREET) == AreaScope(STREET)
    assert AreaScope.of("supervisor", "").district_wide and AreaScope.of("admin", ELSEWHERE).district_wide
    assert AreaScope(STREET).covers(HOME) and not AreaScope(HOME).covers(NEIGHBOUR)
    assert not AreaScope(STREET).covers(None) and DISTRICT.covers(None)  # unplaced: district-wide only
    assert errors.OutsideArea.status == 403


async def test_a_scoped_list_holds_only_the_volunteers_of_the_area():
    ctx = await registry_of_three()
    assert await listed(ctx, GRID_WORKER) == ["v-home"]
    assert await listed(ctx, AreaScope.of("supervisor", STREET)) == ["v-home", "v-neighbour"]
    assert await listed(ctx, AreaScope.of("supervisor", "119999")) == []
    assert await listed(ctx, DISTRICT) == ["v-elsewhere", "v-home", "v-neighbour"]
    assert await listed(ctx, AreaScope(STREET), NEIGHBOUR) == ["v-neighbour"]
    with pytest.raises(errors.OutsideArea):
        await listed(ctx, GRID_WORKER, NEIGHBOUR)


async def test_a_volunteer_outside_the_area_is_refused_and_one_that_does_not_exist_is_not_found():
    ctx = await registry_of_three()
    assert (await registry.get(ctx, "v-home", scope=GRID_WORKER)).community == HOME
    refused = [
        registry.get(ctx, "v-elsewhere", scope=GRID_WORKER),
        registry.update(ctx, "v-elsewhere", {"on_duty": False}, scope=GRID_WORKER),
        registry.verify_qualification(ctx, "v-elsewhere", "first_aid", None, None, "staff-1", scope=GRID_WORKER),
        queries.certificate(ctx, "v-elsewhere", scope=GRID_WORKER),
        queries.volunteer_hours(ctx, "v-elsewhere", scope=GRID_WORKER),
    ]
    for call in refused:
        with pytest.raises(errors.OutsideArea):
            await call
    unchanged = await registry.get(ctx, "v-elsewhere", scope=DISTRICT)
    assert unchanged.on_duty and not unchanged.qualifications and unchanged.version == 1
    with pytest.raises(errors.NotFound):
        await registry.get(ctx, "nobody", scope=GRID_WORKER)


async def test_staff_register_and_change_only_within_their_area_and_move_no_one_out_of_it():
    ctx = await registry_of_three()
    with pytest.raises(errors.OutsideArea):
        await registry.register(ctx, profile("v-new", ELSEWHERE), "staff-1", "v-new", scope=GRID_WORKER)
    assert await ctx.store.volunteers.get("v-new") is None
    assert (await registry.register(ctx, profile("v-new", HOME), "staff-1", "v-new", scope=GRID_WORKER)).id == "v-new"
    with pytest.raises(errors.OutsideArea):
        await registry.update(ctx, "v-home", {"community": ELSEWHERE}, scope=GRID_WORKER)
    assert (await registry.update(ctx, "v-home", {"on_duty": False}, scope=GRID_WORKER)).on_duty is False
    v = await registry.verify_qualification(ctx, "v-home", "first_aid", None, "cert 1", "staff-1", scope=GRID_WORKER)
    assert set(v.qualifications) == {"first_aid"}
    street = AreaScope(STREET)  # the street's supervisor moves a volunteer between its communities
    assert (await registry.update(ctx, "v-home", {"community": NEIGHBOUR}, scope=street)).community == NEIGHBOUR


async def delivered_in(community: str):
    """A request located in ``community`` served by v-1 (of ELSEWHERE: volunteers serve across
    communities), its hours delivered."""
    ctx = on_fake()
    await registry.register(ctx, profile("v-1", ELSEWHERE, north_m=100, party_member=True, work_unit="School"),
                            "staff-0", "v-1", scope=DISTRICT)
    env = requested(community=community)
    await consumed.handle_batch(ctx, [delivery(env)])
    m = await ctx.store.matches.get(env.subject)
    await offers.accept(ctx, "v-1", m.offers[0].offer_id)
    entry = await hours.check_in(ctx, "v-1", env.subject)
    ctx.clock.advance(minutes=60)
    await hours.complete(ctx, "v-1", env.subject, None)
    return ctx, env.subject, entry


async def test_a_match_and_its_hours_belong_to_the_area_of_the_request():
    ctx, rid, entry = await delivered_in(HOME)
    assert (await queries.match(ctx, rid, scope=GRID_WORKER)).visit.community == HOME
    for call in (queries.match(ctx, rid, scope=FOREIGN), offers.no_show(ctx, rid, "staff-1", scope=FOREIGN),
                 hours.approve(ctx, entry.id, "staff-1", scope=FOREIGN),
                 hours.correct(ctx, entry.id, "staff-1", 3, "too little", scope=FOREIGN)):
        with pytest.raises(errors.OutsideArea):
            await call
    assert (await ctx.store.hours.get(entry.id)).approval == "pending"
    assert (await hours.approve(ctx, entry.id, "staff-1", scope=GRID_WORKER)).approval == "approved"


async def test_reports_are_narrowed_to_the_area():
    ctx, _, entry = await delivered_in(HOME)
    month = entry.month
    here = await queries.service_times(ctx, month, scope=GRID_WORKER)
    assert [c["community"] for c in here["by_community"]] == [HOME] and here["totals"]["person_times"] == 1
    assert (await queries.service_times(ctx, month, scope=AreaScope(NEIGHBOUR)))["totals"]["person_times"] == 0
    # the work unit's report is about its members, who live in ELSEWHERE
    assert await queries.work_units(ctx, scope=GRID_WORKER) == []
    assert await queries.work_units(ctx, scope=FOREIGN) == ["School"]
    assert (await queries.work_unit_report(ctx, "School", month, scope=GRID_WORKER))["members"] == []
    assert [r["volunteer_id"] for r in (await queries.work_unit_report(ctx, "School", month, scope=FOREIGN))[
        "members"]] == ["v-1"]


async def test_a_preview_leaves_out_the_candidates_from_outside_the_area():
    ctx = await registry_of_three()
    env = requested()
    p = env.data
    q = MatchQuery(lat=p.location.lat, lon=p.location.lon, service_code=p.service_code, start=p.needed_from,
                   hours=p.needed_hours)
    assert {c.volunteer_id for c in (await queries.preview(ctx, q, 10, scope=DISTRICT)).candidates} == {
        "v-home", "v-neighbour", "v-elsewhere"}
    res = await queries.preview(ctx, q, 10, scope=GRID_WORKER)
    assert [c.volunteer_id for c in res.candidates] == ["v-home"] and res.funnel["outside_your_area"] == 2
