"""KPIs on a hand-computed scenario (queries and HTTP API with area scope), and the quarterly
evaluation export (CSV, JSON, charts)."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from civicgrid_audit.adapters.export import write_evaluation
from civicgrid_audit.entrypoints.http import router
from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import DEFAULT_CALENDAR
from civicgrid_contracts.events.audit import RequestEscalated
from civicgrid_contracts.events.grid import (
    DepartmentDispatched,
    DepartmentReported,
    RequestAccepted,
    RequestAssigned,
    RequestRejected,
    RequestResolved,
)
from civicgrid_contracts.events.intake import RequestMerged, RequestRated, RequestReceived, RequestReopened
from civicgrid_contracts.values import AreaPath, Location, TimeLimits
from civicgrid_runtime.auth import mint_token
from civicgrid_runtime.problems import install_problem_handlers
from civicgrid_runtime.testing import unique

from .conftest import eventually

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
GRID = "110105001001001"
AREA = AreaPath(district="110105", street="110105001", community="110105001001", grid=GRID)
I, G = "/civicgrid/intake", "/civicgrid/grid"  # noqa: E741 - the producing services, briefly


def h(x: float) -> datetime:
    return T0 + timedelta(hours=x)


def scenario(p: str) -> list[Envelope]:
    ev: list[Envelope] = []

    def rec(r):
        ev.append(Envelope.wrap(RequestReceived.starting_clocks(DEFAULT_CALENDAR,
            request_id=r, service_code="S-REPAIR", service_name="repair", location=Location(), description="x",
            channel="app", received_at=T0, time_limits=TimeLimits(response_hours=2, resolution_hours=24,
                                                                  calendar="calendar")), source=I))

    def asg(r, staff="staff-1"):
        ev.append(Envelope.wrap(RequestAssigned(request_id=r, area=AREA, assignee_id=staff, holder="A", reason="A",
                                                map_version=1, assigned_at=h(0.1)), source=G))

    def acc(r, at, staff="staff-1"):
        ev.append(Envelope.wrap(RequestAccepted(request_id=r, staff_id=staff, accepted_at=h(at)), source=G))

    def res(r, at):
        ev.append(Envelope.wrap(RequestResolved(request_id=r, staff_id="staff-1", resolution_note="ok",
                                                resolved_at=h(at)), source=G))

    def rate(r, rating, at):
        ev.append(Envelope.wrap(RequestRated(request_id=r, rating=rating, rated_at=h(at)), source=I))

    r1, r2, r3, r4, r5, r6, r7 = (f"{p}-{i}" for i in range(1, 8))
    for r in (r1, r2, r3, r4, r5, r6, r7):
        rec(r)
    for r in (r1, r2, r3, r6, r7):
        asg(r)
    asg(r4, "staff-2")
    acc(r1, 1), res(r1, 10), rate(r1, "satisfied", 11)
    acc(r2, 3), res(r2, 30), rate(r2, "basically_satisfied", 31)
    ev.append(Envelope.wrap(DepartmentDispatched(request_id=r2, dispatch_id="d1", departments=("chengguan",),
                                                 joint=False, report_by=h(28), reason="enforcement",
                                                 dispatched_at=h(4)), source=G))
    ev.append(Envelope.wrap(DepartmentReported(request_id=r2, dispatch_id="d1", department="chengguan", outcome="ok",
                                               reported_at=h(24), all_reported=True), source=G))
    acc(r3, 0.5), res(r3, 5), rate(r3, "unsatisfied", 6)
    ev.append(Envelope.wrap(RequestReopened(request_id=r3, reason="unsatisfied", reopened_at=h(6.1)), source=I))
    acc(r4, 1, "staff-2")
    ev.append(Envelope.wrap(RequestMerged(request_id=r5, into_request_id=r1, distance_m=3, followers=2), source=I))
    ev.append(Envelope.wrap(RequestRejected(request_id=r6, staff_id="staff-1", reason="out of scope",
                                            rejected_at=h(1)), source=G))
    ev.append(Envelope.wrap(RequestEscalated(request_id=r7, escalation_id=f"{r7}|response|1", clock="response", step=1,
                                             from_level="grid", to_level="community", due_at=h(2), escalated_at=h(2),
                                             overdue_hours=0.0), source="/civicgrid/audit"))
    return ev


async def test_kpis_on_a_hand_computed_scenario_and_evaluation_export(audit, tmp_path):
    p = unique("KPI")
    events = scenario(p)
    await audit.runtime.publisher.publish_many(events)

    async def all_in():
        docs = [await audit.queries.request(f"{p}-{i}") for i in range(1, 8)]
        if not all(docs):
            return None
        k = await audit.queries.kpis("all", "*", "2026-11-01", "2026-11-30")
        done = (k["received"], k["resolved"], k["rated"], k["overdue"], k["responded"]) == (7, 2, 3, 1, 4)
        return k if done else None

    k = await eventually(all_in, timeout=60)
    assert (k["received"], k["counted"], k["excluded"]) == (7, 5, 2)
    g = await audit.queries.kpis("grid", GRID, "2026-11-01", "2026-11-30")
    assert (g["received"], g["counted"], g["excluded"]) == (6, 5, 1)  # the merged one never reached a grid
    assert {x: v for x, v in g.items() if x not in ("received", "excluded", "dimension", "key")} == {
        x: v for x, v in k.items() if x not in ("received", "excluded", "dimension", "key")}
    assert k["response_rate"] == 0.6  # on time R1, R3, R4 of due-or-done R1-R4 + R7 (escalated)
    assert k["resolution_rate"] == 0.4  # R1, R2 of 5 counted
    assert k["satisfaction_rate"] == 0.6667  # satisfied + basically / rated = 2/3
    assert k["response_on_time_rate"] == 0.75 and k["resolution_on_time_rate"] == 0.5
    assert k["reopen_rate"] == 0.5 and k["overdue"] == 1
    assert k["median_handling_hours"] == 11.314 and k["p90_handling_hours"] == 32.0
    assert k["median_response_hours"] == 1.0 and k["p90_response_hours"] == 4.0
    # the same figures at the community and street level; other dimensions
    assert (await audit.queries.kpis("street", "110105001", "2026-11-02", "2026-11-02"))["response_rate"] == 0.6
    s2 = await audit.queries.kpis("staff", "staff-2", "2026-11-01", "2026-11-30")
    assert (s2["received"], s2["response_rate"], s2["resolution_rate"]) == (1, 1.0, 0.0)
    d = await audit.queries.kpis("department", "chengguan", "2026-10-01", "2026-12-31")
    assert (d["dispatched"], d["reported"], d["report_back_on_time_rate"]) == (1, 1, 1.0)
    assert (await audit.queries.kpis("grid", GRID, "2026-10-01", "2026-10-31"))["received"] == 0

    # over HTTP, with the area scope of the token
    app = FastAPI()
    app.state.service, app.state.auth_secret = audit, "audit-test-secret-of-at-least-32-bytes"
    install_problem_handlers(app)
    app.include_router(router)
    ok = mint_token(secret="audit-test-secret-of-at-least-32-bytes", sub="sup", role="supervisor", area="110105001")
    other = mint_token(secret="audit-test-secret-of-at-least-32-bytes", sub="sup2", role="supervisor", area="110105002")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        q = {"dimension": "grid", "key": GRID, "from": "2026-11-01", "to": "2026-11-30"}
        r = await c.get("/kpis", params=q, headers={"Authorization": f"Bearer {ok}"})
        assert r.status_code == 200 and r.json()["resolution_rate"] == 0.4 and r.json()["from"] == "2026-11-01"
        r = await c.get("/kpis", params=q, headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
        r = await c.get("/kpis", params={**q, "to": "2026-10-01"}, headers={"Authorization": f"Bearer {ok}"})
        assert r.status_code == 422
        r = await c.get(f"/requests/{p}-3/timeline", headers={"Authorization": f"Bearer {ok}"})
        assert r.status_code == 200 and r.json()["state"]["status"] == "reopened"
        r = await c.get(f"/requests/{p}-3/timeline", headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 403

    # quarterly evaluation: ranks with the figures behind them, exported as CSV, JSON and charts
    ev = await audit.queries.evaluation("2026Q4")
    staff = ev["dimensions"]["staff"]
    assert [(r["key"], r["rank"]) for r in staff] == [("staff-1", 1), ("staff-2", 2)]
    assert staff[0]["score"] == 55.56 and staff[1]["score"] == 50.0
    assert ev["dimensions"]["grid"][0]["key"] == GRID and ev["dimensions"]["department"][0]["key"] == "chengguan"
    files = write_evaluation(ev, tmp_path)
    names = {f.name for f in files}
    for dim in ("staff", "grid", "community", "department"):
        assert {f"evaluation-2026Q4-{dim}.csv", f"evaluation-2026Q4-{dim}.png", f"evaluation-2026Q4-{dim}.svg"} <= names
    rows = list(csv.DictReader((tmp_path / "evaluation-2026Q4-staff.csv").open()))
    assert [(r["rank"], r["key"], r["score"]) for r in rows] == [("1", "staff-1", "55.56"), ("2", "staff-2", "50.0")]
    data = json.loads((tmp_path / "evaluation-2026Q4.json").read_text())
    assert data["dimensions"]["staff"][0]["resolution_rate"] == 0.5
    assert (tmp_path / "evaluation-2026Q4-staff.png").read_bytes()[:4] == b"\x89PNG"


async def test_counters_shared_by_partitions_add_up_when_writers_race(fresh_db):
    """Every partition adds to the same counter documents: two writers inserting the same new
    counters at once both count (the loser of each insert adds with $inc), and a database that
    still holds counters sharded by partition (the layout before) is added up with them."""
    import asyncio

    from civicgrid_audit.adapters.projection import COUNTERS, add_to_counters, legacy_counter_collection
    from civicgrid_audit.adapters.queries import Queries
    from civicgrid_audit.domain import kpi
    from civicgrid_runtime.calendar import FixedCalendar

    ids = [kpi.counter_id("grid", f"g{i}", "2026-11-02") for i in range(300)]
    counters = fresh_db[COUNTERS]
    await asyncio.gather(*(add_to_counters(counters, {cid: {"received": n, "resolved": 1} for cid in ids},
                                           existing=set(), positions={cid: {f"t:{n}": n} for cid in ids})
                           for n in (1, 2, 3)))
    docs = {d["_id"]: d async for d in counters.find({})}
    assert len(docs) == len(ids)
    assert all(d["m"] == {"received": 6, "resolved": 3} and d["_pos"] == {"t:1": 1, "t:2": 2, "t:3": 3}
               for d in docs.values())
    await fresh_db[legacy_counter_collection(3)].insert_one(
        {"_id": f"{ids[0]}|p3", "dim": "grid", "key": "g0", "day": "2026-11-02", "m": {"received": 4}})
    q = Queries(fresh_db, FixedCalendar())
    assert (await q.counters("grid", "g0", "2026-11-02", "2026-11-03"))["received"] == 10
