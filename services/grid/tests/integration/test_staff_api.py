"""Staff actions over HTTP on the real stack: whistle with a joint case, transfer, accept, scopes,
and a rejected map import that changes nothing."""

from __future__ import annotations

import pytest

from civicgrid_grid.demo.roster import staff_ids_for_grid

pytestmark = [pytest.mark.infra, pytest.mark.asyncio(loop_scope="session")]


async def test_whistle_joint_case_stays_open_until_every_department_reported(harness):
    g = harness.grid(8)
    env = harness.received(g, handled_by=("grid", "department"), departments=("chengguan", "market_supervision"))
    await harness.publish(env)
    a = (await harness.assigned(env)).data
    [disp] = await harness.collector.wait_for(env.subject, "civicgrid.request.department_dispatched")
    assert disp.data.joint and set(disp.data.departments) == {"chengguan", "market_supervision"}
    rid, did = env.subject, disp.data.dispatch_id
    worker = harness.token(a.assignee_id, "grid_worker", g)
    r = await harness.http.post(f"/v1/requests/{rid}/accept", headers=worker)
    assert r.status_code == 200, r.text
    await harness.collector.wait_for(rid, "civicgrid.request.accepted")
    cg = harness.token("chengguan", "department")
    assert rid in [q["request_id"] for q in (await harness.http.get("/v1/queue", headers=cg)).json()]
    r = await harness.http.post(f"/v1/requests/{rid}/dispatches/{did}/acknowledge", headers=cg)
    assert r.status_code == 200, r.text
    r = await harness.http.post(f"/v1/requests/{rid}/dispatches/{did}/report", headers=cg,
                                json={"outcome": "stall removed"})
    assert r.status_code == 200, r.text
    r = await harness.http.post(f"/v1/requests/{rid}/resolve", headers=worker, json={"resolution_note": "done"})
    assert r.status_code == 409 and "Joint case" in r.json()["detail"]
    ms = harness.token("market_supervision", "department")
    r = await harness.http.post(f"/v1/requests/{rid}/dispatches/{did}/report", headers=ms,
                                json={"outcome": "licence checked"})
    assert r.status_code == 200, r.text
    reports = await harness.collector.wait_for(rid, "civicgrid.request.department_reported", count=2)
    assert [e.data.all_reported for e in reports] == [False, True]
    r = await harness.http.post(f"/v1/requests/{rid}/resolve", headers=worker, json={"resolution_note": "done"})
    assert r.status_code == 200, r.text
    await harness.collector.wait_for(rid, "civicgrid.request.resolved")


async def test_transfer_to_another_grid(harness):
    g_from, g_to = harness.grid(9), harness.grid(10)
    env = harness.received(g_from)
    await harness.publish(env)
    a = (await harness.assigned(env)).data
    rid = env.subject
    # a worker of another grid may not touch it
    other = harness.token("stranger", "grid_worker", g_to)
    assert (await harness.http.post(f"/v1/requests/{rid}/transfer", headers=other,
                                    json={"to_grid": g_to, "reason": "x"})).status_code == 403
    worker = harness.token(a.assignee_id, "grid_worker", g_from)
    r = await harness.http.post(f"/v1/requests/{rid}/transfer", headers=worker,
                                json={"to_grid": g_to, "reason": "wrong location: the stall is across the road"})
    assert r.status_code == 200, r.text
    [t] = await harness.collector.wait_for(rid, "civicgrid.request.transferred")
    assigned = await harness.collector.wait_for(rid, "civicgrid.request.assigned", count=2)
    assert (t.data.from_grid, t.data.to_grid) == (g_from, g_to)
    new = assigned[-1].data
    assert new.area.grid == g_to and new.assignee_id == staff_ids_for_grid(g_to)[0]
    assert "transferred from" in new.reason
    old = await harness.svc.ctx.staff.get(a.assignee_id)
    assert rid not in old["holding"]


async def test_rejected_import_names_every_defect_and_changes_nothing(harness):
    from ..unit.test_domain import broken_map

    fc, expected = broken_map()
    db = harness.svc.runtime.db
    before = (await harness.svc.maps.current_version(), await db["map_areas"].count_documents({}),
              await db["map_buildings"].count_documents({}),
              await db["map_versions"].count_documents({}))
    r = await harness.http.post("/v1/map/import", json=fc, headers=harness.token("admin", "admin"))
    assert r.status_code == 422
    body = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    named = {(e["code"], e["defect"]) for e in body["errors"]}
    for code, kind in expected.items():
        assert (code, kind) in named
    after = (await harness.svc.maps.current_version(), await db["map_areas"].count_documents({}),
             await db["map_buildings"].count_documents({}),
             await db["map_versions"].count_documents({}))
    assert after == before
    # only an admin may import
    r = await harness.http.post("/v1/map/import", json=fc, headers=harness.token("sup", "supervisor"))
    assert r.status_code == 403


async def test_map_endpoints_for_demo_tools(harness):
    r = await harness.http.get("/v1/map")
    assert r.status_code == 200 and r.json()["counts"]["grids"] == 36
    b = (await harness.http.get("/v1/map/buildings", params={"limit": 3, "seed": 1})).json()["buildings"]
    assert len(b) == 3
    loc = (await harness.http.get("/v1/map/locate", params={"lat": b[0]["lat"], "lon": b[0]["lon"]})).json()
    assert loc["grid"] == b[0]["grid"] and loc["located"]
