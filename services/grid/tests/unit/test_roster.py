"""The roster's rules (A/B posts, staff profiles, duty) and its administration on the in-memory
adapters: who may hold a post, who serves it now, each change version-guarded and published as an
administrative change, and the request assigned next going where the roster says."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from civicgrid_grid.adapters.documents import member_from_document
from civicgrid_grid.demo.roster import staff_ids_for_grid
from civicgrid_grid.domain.assignment import Staff
from civicgrid_grid.domain.errors import (
    ChangedMeanwhile,
    InvalidValue,
    NotAllowed,
    NotFound,
    UnknownReference,
)
from civicgrid_grid.domain.roster import Post, StaffMember, who_serves
from civicgrid_grid.handlers import RosterAdmin, handle_requests
from civicgrid_runtime.auth import Principal

from .fakes import city, delivered, fake_grid, published, received

TODAY = date(2026, 11, 28)
AT = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)  # 10:00 in the district
GRID = "110101001001001"
POST = Post(f"p{GRID}-general", GRID, "general", "grid", "w1", "w2", version=3)
ADMIN = Principal("admin-1", "admin")
ADMIN_CHANGED = "civicgrid.access.admin_changed"


def worker(sid: str, **kw) -> StaffMember:
    return StaffMember(sid, f"Worker {sid}", kw.pop("role", "grid_worker"), kw.pop("area", GRID), **kw)


def grid(i: int) -> str:
    return city().grids.codes[i]


# ------------------------------------------------------------------------------ who may hold a post


def test_a_post_takes_a_qualified_b_and_says_what_changed():
    post = replace(POST)
    changes = post.change_holders(worker("w1"), worker("w3", area=GRID[:12] + "002"))  # a neighbour grid's worker
    assert changes == {"b": "w3"} and (post.a, post.b) == ("w1", "w3")


@pytest.mark.parametrize(("a", "b", "field", "says"), [
    (None, worker("w2"), "a", "always has an A"),
    (worker("w1"), worker("w1"), "b", "different person"),
    (worker("w1"), worker("w2", lines=("care",)), "b", "not trained for the general line"),
    (worker("w1"), worker("w2", active=False), "b", "no longer on the roster"),
    (worker("w1"), worker("c1", role="supervisor", area=GRID[:12]), "b", "needs a grid_worker"),
    (worker("w1"), worker("w2", area="110101001002001"), "b", "outside 110101001001"),
    (worker("w1", active=False), worker("w2"), "a", "no longer on the roster"),
])
def test_a_post_refuses_a_holder_who_does_not_qualify_naming_the_field(a, b, field, says):
    post = replace(POST)
    with pytest.raises(InvalidValue) as exc:
        post.change_holders(a, b)
    assert exc.value.field == field and says in exc.value.reason
    assert (post.a, post.b) == ("w1", "w2")  # unchanged


def test_b_may_be_left_vacant_but_never_a():
    post = replace(POST)
    assert post.change_holders(worker("w1"), None) == {"b": None}


# ------------------------------------------------------------------------------ who serves a post now


@pytest.mark.parametrize(("a", "b", "serving", "reason"), [
    (Staff("w1"), Staff("w2"), "A", ""),
    (Staff("w1", "off"), Staff("w2"), "B", "A off duty"),
    (Staff("w1", "leave", "2026-12-01"), Staff("w2"), "B", "A on leave until 2026-12-01"),
    (Staff("w1", load=20, limit=20), Staff("w2"), "B", "A at load limit (20)"),
    (Staff("w1", "off"), Staff("w2", "off"), "chain", "A off duty, B off duty"),
    (Staff("w1", "off", away_until=AT - timedelta(minutes=1)), Staff("w2"), "A", ""),  # back by now
    (Staff("w1", "off", away_until=AT + timedelta(hours=2)), Staff("w2"), "B", "A off duty"),
    (Staff("w1", active=False), Staff("w2"), "B", "A no longer on the roster"),
])
def test_who_serves_a_post_now(a, b, serving, reason):
    cover = who_serves(POST, {"w1": a, "w2": b}, TODAY, AT)
    assert (cover.serving, cover.reason) == (serving, reason)


def test_a_vacant_b_leaves_the_post_to_the_chain_when_a_is_out():
    assert who_serves(replace(POST, b=None), {"w1": Staff("w1", "off")}, TODAY, AT).reason == "A off duty; no B"


# ------------------------------------------------------------------------------ duty and profile


def test_duty_rules_name_the_field():
    m = worker("w1")
    with pytest.raises(InvalidValue, match="leave_until: required"):
        m.set_duty("leave", leave_until=None, away_until=None, limit=None, today=TODAY, now=AT)
    with pytest.raises(InvalidValue, match="leave_until: is before today"):
        m.set_duty("leave", leave_until="2026-11-27", away_until=None, limit=None, today=TODAY, now=AT)
    with pytest.raises(InvalidValue, match="away_until: is not in the future"):
        m.set_duty("off", leave_until=None, away_until=AT, limit=None, today=TODAY, now=AT)
    with pytest.raises(InvalidValue, match="away_until: only with duty off"):
        m.set_duty("on", leave_until=None, away_until=AT + timedelta(hours=1), limit=None, today=TODAY, now=AT)
    assert m.duty == "on"
    m.set_duty("off", leave_until=None, away_until=AT + timedelta(hours=3), limit=None, today=TODAY, now=AT)
    assert (m.duty, m.away_until) == ("off", AT + timedelta(hours=3))
    m.set_duty("on", leave_until=None, away_until=None, limit=None, today=TODAY, now=AT)
    assert (m.duty, m.away_until, m.leave_until) == ("on", None, None)


def test_a_profile_change_may_not_leave_a_post_without_a_qualified_holder():
    m = worker("w2")
    with pytest.raises(NotAllowed, match=f"p{GRID}-general .B: is not trained for the general line"):
        m.update_profile(name=m.name, role=m.role, area=m.area, lines=["care"], limit=20, active=True, held=[POST])
    with pytest.raises(NotAllowed, match="no longer on the roster"):
        m.update_profile(name=m.name, role=m.role, area=m.area, lines=["general"], limit=20, active=False,
                         held=[POST])
    changes = m.update_profile(name="Renamed", role=m.role, area=m.area, lines=["general"], limit=25, active=True,
                               held=[POST])
    assert changes == {"limit": 25, "lines": "general", "name": "changed"}  # the name itself stays off the bus


@pytest.mark.parametrize(("role", "area", "field"), [
    ("grid_worker", GRID[:12], "area"), ("supervisor", GRID, "area"), ("grid_worker", "1101", "area"),
    ("mayor", GRID, "role"),
])
def test_a_new_member_needs_a_role_that_fits_the_area(role, area, field):
    with pytest.raises(InvalidValue) as exc:
        StaffMember.new("x", name="X", role=role, area=area, lines=[], limit=5)
    assert exc.value.field == field


def test_a_shape_1_staff_document_is_trained_for_every_line():
    m = member_from_document({"_id": "s1", "name": "Old", "role": "grid_worker", "area": GRID, "duty": "on",
                              "limit": 20, "load": 3})
    assert (m.lines, m.active, m.version, m.load) == (("general", "care"), True, 0, 3)


# ------------------------------------------------------------------------------ administration on fakes


async def test_swapping_b_and_setting_a_away_sends_the_next_request_to_the_new_b():
    ctx, _ = await fake_grid()
    roster = RosterAdmin(ctx)
    g, neighbour = grid(4), grid(5)
    assert g[:12] == neighbour[:12], "two grids of one community"
    a_id, old_b, _ = staff_ids_for_grid(g)
    new_b = staff_ids_for_grid(neighbour)[0]
    [before] = [v for v in await roster.posts_of_area(g) if v.post.line == "general"]
    view = await roster.change_post(ADMIN, before.post.id, a=a_id, b=new_b, version=before.post.version,
                                    reason="covering while the team is short")
    assert (view.post.b, view.post.version, view.cover.serving) == (new_b, before.post.version + 1, "A")
    [ev] = [e for e in ctx.roster.published if e.type == ADMIN_CHANGED]
    assert (ev.subject, ev.data.action, ev.data.details) == (
        f"roster:{before.post.id}", "roster.post", {"b": new_b, "area": g, "line": "general"})
    assert ev.data.reason == "covering while the team is short"

    me = await roster.member(a_id)
    await roster.set_duty(Principal(a_id, "grid_worker", g), a_id, duty="off", version=me.version)
    [duty] = [e for e in ctx.staff.published if e.type == ADMIN_CHANGED]
    assert (duty.data.action, duty.data.details["duty"], duty.data.details["self"]) == ("roster.duty", "off", True)
    [now_view] = [v for v in await roster.posts_of_area(g) if v.post.line == "general"]
    assert (now_view.cover.serving, now_view.cover.reason) == ("B", "A off duty")

    env = received(g)
    await handle_requests(ctx, delivered(env))
    [assigned] = published(ctx, env.subject, "civicgrid.request.assigned")
    assert (assigned.data.assignee_id, assigned.data.holder, assigned.data.reason) == (new_b, "B", "B: A off duty")
    assert old_b not in (assigned.data.assignee_id,)


async def test_a_post_change_from_a_stale_read_or_naming_a_stranger_is_refused():
    ctx, _ = await fake_grid()
    roster = RosterAdmin(ctx)
    g = grid(6)
    a_id, b_id, _ = staff_ids_for_grid(g)
    [view] = [v for v in await roster.posts_of_area(g) if v.post.line == "general"]
    with pytest.raises(ChangedMeanwhile):
        await roster.change_post(ADMIN, view.post.id, a=b_id, b=a_id, version=view.post.version - 1)
    with pytest.raises(UnknownReference) as exc:
        await roster.change_post(ADMIN, view.post.id, a=a_id, b="nobody", version=view.post.version)
    assert exc.value.field == "b"
    with pytest.raises(NotFound):
        await roster.change_post(ADMIN, "p-none", a=a_id, b=None, version=0)
    swapped = await roster.change_post(ADMIN, view.post.id, a=b_id, b=a_id, version=view.post.version)
    assert (swapped.post.a, swapped.post.b) == (b_id, a_id)  # a swap is one change
    assert ctx.roster.published[-1].data.details == {"a": b_id, "b": a_id, "area": g, "line": "general"}


async def test_adding_and_updating_a_member():
    ctx, _ = await fake_grid()
    roster = RosterAdmin(ctx)
    g = grid(7)
    with pytest.raises(UnknownReference) as exc:
        await roster.add_member(ADMIN, "s-new", name="New", role="grid_worker", area="110101999999999",
                                lines=["general"], limit=10)
    assert exc.value.field == "area"
    m = await roster.add_member(ADMIN, "s-new", name="New", role="grid_worker", area=g, lines=["general"], limit=10)
    assert m.version == 1 and ctx.staff.published[-1].data.details == {
        "role": "grid_worker", "area": g, "lines": "general", "limit": 10}
    with pytest.raises(NotAllowed, match="taken"):
        await roster.add_member(ADMIN, "s-new", name="Again", role="grid_worker", area=g, lines=[], limit=1)
    with pytest.raises(ChangedMeanwhile):
        await roster.update_member(ADMIN, "s-new", name="New", role="grid_worker", area=g, lines=["general"],
                                   limit=12, active=True, version=0)
    m = await roster.update_member(ADMIN, "s-new", name="New", role="grid_worker", area=g,
                                   lines=["general", "care"], limit=12, active=True, version=1)
    assert (m.limit, m.lines, m.version) == (12, ("general", "care"), 2)
    a_id = staff_ids_for_grid(g)[0]
    a = await roster.member(a_id)
    with pytest.raises(NotAllowed, match="holds posts"):  # A of the general post, B of the care post
        await roster.update_member(ADMIN, a_id, name=a.name, role=a.role, area=a.area, lines=a.lines, limit=a.limit,
                                   active=False, version=a.version)


async def test_duty_without_a_version_is_still_one_guarded_write():
    ctx, _ = await fake_grid()
    roster = RosterAdmin(ctx)
    sid = staff_ids_for_grid(grid(8))[1]
    before = (await roster.member(sid)).version
    m = await roster.set_duty(Principal("c1", "supervisor"), sid, duty="leave", leave_until="2999-01-01")
    assert (m.duty, m.version) == ("leave", before + 1)
    with pytest.raises(ChangedMeanwhile):
        await roster.set_duty(Principal("c1", "supervisor"), sid, duty="on", version=before)
