"""The roster's administration over HTTP on the real broker and store: an area's posts, a post's
B swapped (version-guarded, refusals naming the field), A setting themselves away, the next
request going to the new B, every change an administrative change event on staff.access.v1 that
leaves no outbox behind, and who may do what."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from civicgrid_contracts import topics
from civicgrid_grid.demo.roster import staff_ids_for_grid
from civicgrid_runtime.store import OUTBOX, PENDING

from .conftest import Collector

pytestmark = [pytest.mark.infra, pytest.mark.asyncio(loop_scope="session")]
ADMIN_CHANGED = "civicgrid.access.admin_changed"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trail(infra):
    """Every administrative change grid publishes while this module runs."""
    c = Collector(infra.kafka, topics.STAFF_ACCESS.name)
    await c.start()
    yield c
    await c.stop()


def two_grids_of_one_community(harness) -> tuple[str, str]:
    codes = harness.city.grids.codes
    for i in range(len(codes) - 1, 0, -1):  # from the end: the other modules use the first grids
        if codes[i][:12] == codes[i - 1][:12]:
            return codes[i], codes[i - 1]
    raise AssertionError("no community with two grids")


async def stored_clean(db, collection: str, _id: str) -> dict:
    """The document once the relay has published its change and cleared the outbox."""
    for _ in range(200):
        doc = await db[collection].find_one({"_id": _id})
        if not doc.get(OUTBOX) and not doc.get(PENDING):
            return doc
        await asyncio.sleep(0.05)
    raise AssertionError(f"{collection} {_id} kept its outbox: {doc}")


async def test_admin_swaps_b_a_goes_away_and_the_next_request_goes_to_the_new_b(harness, trail):
    g, neighbour = two_grids_of_one_community(harness)
    community = g[:12]
    a_id, old_b, _ = staff_ids_for_grid(g)
    new_b = staff_ids_for_grid(neighbour)[0]
    admin = harness.token("admin", "admin")
    http = harness.http

    r = await http.get("/v1/roster/posts", params={"area": community}, headers=admin)
    assert r.status_code == 200, r.text
    posts = {p["id"]: p for p in r.json()["posts"]}
    assert all(p["area"].startswith(community) for p in posts.values()) and len(posts) >= 4
    post = posts[f"p{g}-general"]
    assert (post["a_id"], post["b_id"], post["serving"]) == (a_id, old_b, "A")
    assert post["a"]["name"] and post["a"]["limit"] >= 1 and post["b"]["duty"] == "on"

    # refusals name the field and change nothing
    path = f"/v1/roster/posts/{post['id']}"
    for body, field in (({"a": a_id, "b": a_id, "version": post["version"]}, "b"),
                        ({"a": a_id, "b": "nobody", "version": post["version"]}, "b"),
                        ({"a": "", "b": new_b, "version": post["version"]}, "a"),
                        ({"b": new_b, "version": post["version"]}, "a")):
        r = await http.put(path, json=body, headers=admin)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert field in [e["field"] for e in r.json()["errors"]], r.text
    r = await http.put(path, json={"a": a_id, "b": new_b, "version": post["version"] - 1}, headers=admin)
    assert r.status_code == 409, r.text
    # a supervisor reads their area's posts but changes none
    sup = harness.token(f"c{community}", "supervisor", community)
    assert (await http.get("/v1/roster/posts", params={"area": g}, headers=sup)).status_code == 200
    assert (await http.put(path, json={"a": a_id, "b": new_b, "version": post["version"]},
                           headers=sup)).status_code == 403
    other = next(c for c in harness.city.communities.codes if c != community)
    assert (await http.get("/v1/roster/posts", params={"area": community},
                           headers=harness.token("s", "supervisor", other))).status_code == 403

    r = await http.put(path, json={"a": a_id, "b": new_b, "version": post["version"]}, headers=admin | {
        "X-Change-Reason": "the team is short this week"})
    assert r.status_code == 200, r.text
    assert (r.json()["b_id"], r.json()["version"]) == (new_b, post["version"] + 1)
    [swapped] = await trail.wait_for(f"roster:{post['id']}", ADMIN_CHANGED)
    assert (swapped.data.action, swapped.data.staff_id, swapped.data.reason) == (
        "roster.post", "admin", "the team is short this week")
    assert swapped.data.details["b"] == new_b
    stored = await stored_clean(harness.svc.runtime.db, "posts", post["id"])
    assert (stored["b"], stored["version"], stored["schema_version"]) == (new_b, post["version"] + 1, 2)

    # A sets themselves away (a grid worker may, for themselves only)
    me = harness.token(a_id, "grid_worker", g)
    mine = (await http.get(f"/v1/staff/{a_id}", headers=me)).json()
    assert (await http.put(f"/v1/staff/{a_id}/duty", json={"duty": "off"}, headers=me)).status_code == 403
    r = await http.put("/v1/me/duty", json={"duty": "leave"}, headers=me)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "duty"
    r = await http.put("/v1/me/duty", json={"duty": "off", "version": mine["version"]}, headers=me)
    assert r.status_code == 200 and r.json()["duty"] == "off" and r.json()["unavailable"] == "off duty", r.text
    [away] = await trail.wait_for(f"roster:{a_id}", ADMIN_CHANGED)
    assert (away.data.action, away.data.details["duty"], away.data.details["self"]) == ("roster.duty", "off", True)
    r = await http.put("/v1/me/duty", json={"duty": "on", "version": mine["version"]}, headers=me)
    assert r.status_code == 409, r.text  # read before the change just made

    # who covers whom, as each holder sees it
    covering = (await http.get(f"/v1/staff/{new_b}/posts", headers=harness.token(new_b, "grid_worker",
                                                                                   neighbour))).json()
    here = next(p for p in covering if p["id"] == post["id"])
    assert (here["as_holder"], here["serving"], here["reason"]) == ("B", "B", "A off duty")
    covered = (await http.get(f"/v1/staff/{a_id}/posts", headers=me)).json()
    assert {p["as_holder"] for p in covered} == {"A", "B"}  # A of general, B of care

    env = harness.received(g)
    await harness.publish(env)
    assigned = (await harness.assigned(env)).data
    assert (assigned.assignee_id, assigned.holder, assigned.reason) == (new_b, "B", "B: A off duty")


async def test_staff_members_are_added_and_updated_by_administrators_only(harness, trail):
    g, _ = two_grids_of_one_community(harness)
    admin = harness.token("admin", "admin")
    http = harness.http
    body = {"id": "s-roster-it", "name": "新来的网格员", "role": "grid_worker", "area": g, "lines": ["care"],
            "limit": 8}
    for bad, field in (({"area": "110199999999999"}, "area"), ({"area": g[:12]}, "area"),
                       ({"lines": ["cooking"]}, "lines"), ({"name": ""}, "name"), ({"id": "has space"}, "id")):
        r = await http.post("/v1/roster/staff", json=body | bad, headers=admin)
        assert r.status_code == 422 and field in [e["field"].split("/")[0] for e in r.json()["errors"]], r.text
    assert (await http.post("/v1/roster/staff", json=body,
                            headers=harness.token("sup", "supervisor"))).status_code == 403
    r = await http.post("/v1/roster/staff", json=body, headers=admin)
    assert r.status_code == 201 and r.json()["version"] == 1, r.text
    assert (await http.post("/v1/roster/staff", json=body, headers=admin)).status_code == 409
    [created] = await trail.wait_for("roster:s-roster-it", ADMIN_CHANGED)
    assert created.data.action == "roster.staff_create" and "新来" not in created.model_dump_json()

    update = {k: body[k] for k in ("name", "role", "area", "lines")} | {"limit": 9, "active": True, "version": 0}
    assert (await http.put("/v1/roster/staff/s-roster-it", json=update, headers=admin)).status_code == 409
    r = await http.put("/v1/roster/staff/s-roster-it", json=update | {"version": 1}, headers=admin)
    assert r.status_code == 200 and (r.json()["limit"], r.json()["version"]) == (9, 2), r.text
    listed = (await http.get("/v1/roster/staff", params={"area": g}, headers=admin)).json()
    assert "s-roster-it" in [m["id"] for m in listed]

    # supervisors set duty in their area; leave needs its last day
    sup = harness.token("c", "supervisor", g[:12])
    r = await http.put("/v1/staff/s-roster-it/duty", json={"duty": "leave"}, headers=sup)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "leave_until", r.text
    r = await http.put("/v1/staff/s-roster-it/duty", json={"duty": "leave", "leave_until": "2999-02-30"}, headers=sup)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "leave_until", r.text
    r = await http.put("/v1/staff/s-roster-it/duty", json={"duty": "leave", "leave_until": "2999-01-31"}, headers=sup)
    assert r.status_code == 200 and r.json()["unavailable"] == "on leave until 2999-01-31", r.text


async def test_the_areas_below_an_area_for_the_pickers(harness):
    r = await harness.http.get("/v1/map/areas")
    assert r.status_code == 200 and r.json()["kind"] == "district"
    district = r.json()["areas"][0]["code"]
    streets = (await harness.http.get("/v1/map/areas", params={"within": district})).json()
    assert streets["kind"] == "street" and all(a["code"].startswith(district) for a in streets["areas"])
    street = streets["areas"][0]["code"]
    communities = (await harness.http.get("/v1/map/areas", params={"within": street})).json()["areas"]
    grids = (await harness.http.get("/v1/map/areas", params={"within": communities[0]["code"]})).json()
    assert grids["kind"] == "grid" and len(grids["areas"]) == 6
    assert (await harness.http.get("/v1/map/areas", params={"within": "12"})).status_code == 422
