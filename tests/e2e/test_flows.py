"""A resident's request through all four services, asserted at every stage: what the resident
sees (native API and Open311), what staff see, and what supervision recorded."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import token
from tests.e2e.helpers import eventually, grid_point

pytestmark = [pytest.mark.infra]


async def submit(client, platform, point, *, service="sanitation", description="Rubbish piled in the stairwell",
                 attributes=None, preferred_time=None):
    body = {"preferred_time": preferred_time,"service_code": service, "location": {"lat": point["lat"], "lon": point["lon"]},
            "description": description, "channel": "app",
            "attributes": attributes if attributes is not None else {"waste_type": "household"},
            "contact": {"name": "王小明", "phone": "13800138000", "email": "wang@example.cn"}}
    r = await client.post(f"{platform.url('intake')}/api/v1/requests", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def test_ordinary_request_received_assigned_accepted_resolved_rated_closed(platform):
    async with httpx.AsyncClient(timeout=10) as client:
        point = await grid_point(client, platform.url("grid"))
        created = await submit(client, platform, point)
        rid, resident = created["request_id"], {"X-Request-Token": created["token"]}

        async def assigned():
            r = await client.get(f"{platform.url('grid')}/v1/requests/{rid}", headers=token("admin"))
            return r.json() if r.status_code == 200 and r.json().get("assignee_id") else None

        work = await eventually(assigned, what="assignment")
        assert work["holder"] == "A" and work["grid"] == point["grid"]
        worker = token("grid_worker", sub=work["assignee_id"], area=work["grid"])
        r = await client.post(f"{platform.url('grid')}/v1/requests/{rid}/accept", headers=worker)
        assert r.status_code == 200, r.text
        r = await client.post(f"{platform.url('grid')}/v1/requests/{rid}/resolve", headers=worker,
                              json={"resolution_note": "Cleared by the property company"})
        assert r.status_code == 200, r.text

        async def resident_sees(status):
            async def check():
                r = await client.get(f"{platform.url('intake')}/api/v1/requests/{rid}", headers=resident)
                return r.json() if r.json().get("status") == status else None
            return await eventually(check, what=f"resident sees {status}")

        seen = await resident_sees("resolved")
        assert seen["agency_responsible"]
        r = await client.post(f"{platform.url('intake')}/api/v1/requests/{rid}/rating", headers=resident,
                              json={"rating": "satisfied", "comment": "quick"})
        assert r.status_code == 200, r.text
        seen = await resident_sees("closed")
        statuses = [h["status"] for h in seen["history"] if h.get("status")]
        for s in ("received", "assigned", "accepted", "resolved", "closed"):
            assert s in statuses, statuses

        r = await client.get(f"{platform.url('intake')}/open311/v2/requests/{rid}.json")
        assert r.status_code == 200 and r.json()[0]["status"] == "closed"

        async def audited():
            r = await client.get(f"{platform.url('audit')}/requests/{rid}/timeline", headers=token("auditor"))
            if r.status_code != 200:
                return None
            types = [e["type"].removeprefix("civicgrid.") for e in r.json()["timeline"]]
            return types if "request.closed" in types else None

        types = await eventually(audited, what="audit timeline")
        assert types[:2] == ["request.received", "request.assigned"]
        for t in ("request.accepted", "request.resolved", "request.rated"):
            assert t in types


# ------------------------------------------------------------------------------------------ helpers


async def work_item(client, platform, rid, *, want=lambda w: bool(w.get("assignee_id")), what="grid state"):
    async def check():
        r = await client.get(f"{platform.url('grid')}/v1/requests/{rid}", headers=token("admin"))
        return r.json() if r.status_code == 200 and want(r.json()) else None

    return await eventually(check, what=what)


async def resident_view(client, platform, created, *, want, what="resident view"):
    headers = {"X-Request-Token": created["token"]}

    async def check():
        r = await client.get(f"{platform.url('intake')}/api/v1/requests/{created['request_id']}", headers=headers)
        return r.json() if r.status_code == 200 and want(r.json()) else None

    return await eventually(check, what=what)


async def timeline(client, platform, rid, *, want, what="audit timeline"):
    async def check():
        r = await client.get(f"{platform.url('audit')}/requests/{rid}/timeline", headers=token("auditor"))
        if r.status_code != 200:
            return None
        types = [e["type"].removeprefix("civicgrid.") for e in r.json()["timeline"]]
        return (types, r.json()) if want(types) else None

    return await eventually(check, what=what)


def as_worker(work):
    return token("grid_worker", sub=work["assignee_id"], area=work["grid"] or "")


async def define_service(client, platform, code, **limits):
    """An administrator defines a service with short limits so that lateness happens in test time."""
    body = {
        "name_zh": "測試事項", "name_en": f"Test {code}", "group": "test", "handled_by": limits.pop("handled_by", ["grid"]),
        "departments": limits.pop("departments", []),
        "time_limits": {"response_hours": limits.get("response_hours", 1), "resolution_hours":
                        limits.get("resolution_hours", 24), "report_back_hours": limits.get("report_back_hours"),
                        "calendar": "calendar"},
    }
    r = await client.post(f"{platform.url('intake')}/api/v1/services", json={"code": code, **body},
                          headers=token("admin"))
    assert r.status_code == 201, r.text


# ------------------------------------------------------------------------------------------ flows


async def test_a_on_leave_b_takes_it(platform):
    async with httpx.AsyncClient(timeout=10) as client:
        point = await grid_point(client, platform.url("grid"), index=1)
        first = await submit(client, platform, point)
        w1 = await work_item(client, platform, first["request_id"])
        assert w1["holder"] == "A"
        a_holder = w1["assignee_id"]
        r = await client.put(f"{platform.url('grid')}/v1/staff/{a_holder}/duty", headers=token("supervisor"),
                             json={"duty": "leave", "leave_until": "2099-12-31"})
        assert r.status_code == 200, r.text
        # a different service, so that intake does not (rightly) merge it into the first as a duplicate
        second = await submit(client, platform, point, service="neighbour_dispute", attributes={},
                              description="Upstairs neighbour's washing machine leaks into our kitchen")
        w2 = await work_item(client, platform, second["request_id"])
        assert w2["holder"] == "B" and w2["assignee_id"] != a_holder
        assert "leave" in w2["reason"], w2["reason"]
        seen = await resident_view(client, platform, second, want=lambda v: v["status"] == "assigned")
        assert seen["agency_responsible"]
        await timeline(client, platform, second["request_id"], want=lambda t: "request.assigned" in t)


async def test_likely_duplicate_is_merged_and_both_residents_see_the_outcome(platform):
    async with httpx.AsyncClient(timeout=10) as client:
        point = await grid_point(client, platform.url("grid"), index=2)
        first = await submit(client, platform, point, description="Broken street lamp")
        second = await submit(client, platform, point, description="The street lamp is broken")
        assert second["duplicate_of"] == first["request_id"] and second["followers"] == 2
        w = await work_item(client, platform, first["request_id"])
        worker = as_worker(w)
        for step, body in (("accept", None), ("resolve", {"resolution_note": "Lamp replaced"})):
            r = await client.post(f"{platform.url('grid')}/v1/requests/{first['request_id']}/{step}", json=body,
                                  headers=worker)
            assert r.status_code == 200, r.text
        await resident_view(client, platform, first, want=lambda v: v["status"] == "resolved")
        seen = await resident_view(client, platform, second, want=lambda v: v.get("parent_status") == "resolved")
        assert seen["duplicate_of"] == first["request_id"]
        # the duplicate was never assigned on its own
        r = await client.get(f"{platform.url('grid')}/v1/requests/{second['request_id']}", headers=token("admin"))
        assert r.status_code == 404 or not r.json().get("assignee_id")
        await timeline(client, platform, second["request_id"], want=lambda t: "request.merged" in t)


async def test_enforcement_whistle_one_department_late_escalated_all_report_resolved(platform):
    async with httpx.AsyncClient(timeout=10) as client:
        await define_service(client, platform, "e2e_joint_enforcement", handled_by=["grid", "department"],
                             departments=["chengguan", "market_supervision"], report_back_hours=0.002)
        point = await grid_point(client, platform.url("grid"), index=3)
        created = await submit(client, platform, point, service="e2e_joint_enforcement", attributes={},
                               description="Illegal stall blocking the fire lane")
        rid = created["request_id"]
        w = await work_item(client, platform, rid, want=lambda w: bool(w.get("dispatches")), what="whistle")
        (dispatch_id, dispatch), = w["dispatches"].items()
        assert set(dispatch["departments"]) == {"chengguan", "market_supervision"}
        dep = token("department", sub="chengguan", area="")
        r = await client.post(f"{platform.url('grid')}/v1/requests/{rid}/dispatches/{dispatch_id}/acknowledge",
                              headers=dep)
        assert r.status_code == 200, r.text
        r = await client.post(f"{platform.url('grid')}/v1/requests/{rid}/dispatches/{dispatch_id}/report",
                              headers=dep, json={"outcome": "Stall removed, owner fined"})
        assert r.status_code == 200, r.text
        # market supervision stays silent past its report-back deadline: supervision escalates
        types, _ = await timeline(client, platform, rid, want=lambda t: "request.escalated" in t,
                                  what="report-back escalation")
        w = await work_item(client, platform, rid, want=lambda w: w.get("status") != "resolved")
        assert w["status"] != "resolved", "a joint case stays open until every department reported"
        ms = token("department", sub="market_supervision", area="")
        r = await client.post(f"{platform.url('grid')}/v1/requests/{rid}/dispatches/{dispatch_id}/report",
                              headers=ms, json={"outcome": "Licence checked"})
        assert r.status_code == 200, r.text
        w = await work_item(client, platform, rid)
        r = await client.post(f"{platform.url('grid')}/v1/requests/{rid}/resolve", headers=as_worker(w),
                              json={"resolution_note": "Both departments reported; lane clear"})
        assert r.status_code == 200, r.text
        await resident_view(client, platform, created, want=lambda v: v["status"] == "resolved")
        types, _ = await timeline(client, platform, rid, want=lambda t: "request.resolved" in t)
        assert types.count("request.department_reported") == 2


async def test_volunteer_service_matched_one_decline_accepted_hours_logged_rated(platform):
    async with httpx.AsyncClient(timeout=10) as client:
        point = await grid_point(client, platform.url("grid"), index=4)
        from datetime import datetime, timedelta
        from zoneinfo import ZoneInfo

        tomorrow_10 = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=1)).replace(
            hour=10, minute=0, second=0, microsecond=0)  # when the retired volunteers are available
        created = await submit(client, platform, point, service="elderly_home_care", attributes={
            "care_type": ["company"], "resident_age": 82}, description="My mother needs company tomorrow",
            preferred_time=tomorrow_10.isoformat())
        rid = created["request_id"]

        async def offers():
            r = await client.get(f"{platform.url('matching')}/matches/{rid}", headers=token("supervisor"))
            if r.status_code != 200:
                return None
            open_ = [o for o in r.json()["offers"] if o["status"] == "open"]
            return open_ if len(open_) >= 2 else None

        open_offers = await eventually(offers, what="volunteer offers")
        first, second = open_offers[0], open_offers[1]
        r = await client.post(f"{platform.url('matching')}/me/offers/{first['offer_id']}/decline",
                              headers=token("volunteer", sub=first["volunteer_id"]), json={"reason": "away"})
        assert r.status_code == 200, r.text
        vol = token("volunteer", sub=second["volunteer_id"])
        r = await client.post(f"{platform.url('matching')}/me/offers/{second['offer_id']}/accept", headers=vol)
        assert r.status_code == 200 and r.json()["winner"] == second["volunteer_id"], r.text
        for step in ("check-in", "check-out"):
            r = await client.post(f"{platform.url('matching')}/me/assignments/{rid}/{step}", headers=vol)
            assert r.status_code == 200, r.text
        r = await client.post(f"{platform.url('matching')}/me/assignments/{rid}/complete", headers=vol,
                              json={"note": "Read the newspaper together"})
        assert r.status_code == 200, r.text
        await timeline(client, platform, rid, want=lambda t: "volunteer.service_delivered" in t)
        w = await work_item(client, platform, rid)
        if w["status"] != "resolved":  # a grid-and-volunteer service: the grid worker closes the loop
            r = await client.post(f"{platform.url('grid')}/v1/requests/{rid}/resolve", headers=as_worker(w),
                                  json={"resolution_note": "Volunteer visit delivered"})
            assert r.status_code == 200, r.text
        await resident_view(client, platform, created, want=lambda v: v["status"] == "resolved",
                            what="resolved after the service was delivered")
        r = await client.post(f"{platform.url('intake')}/api/v1/requests/{rid}/rating",
                              headers={"X-Request-Token": created["token"]}, json={"rating": "satisfied"})
        assert r.status_code == 200, r.text

        async def rated():
            r = await client.get(f"{platform.url('matching')}/volunteers/{second['volunteer_id']}",
                                 headers=token("supervisor"))
            return r.json() if r.status_code == 200 and r.json().get("rating_count", 0) >= 1 else None

        await eventually(rated, what="rating reaches the volunteer's record")
        types, _ = await timeline(client, platform, rid, want=lambda t: "request.closed" in t)
        for t in ("request.volunteer_requested", "volunteer.offered", "volunteer.declined", "volunteer.accepted",
                  "volunteer.service_delivered", "request.resolved", "request.rated"):
            assert t in types, (t, types)


async def test_unsatisfied_rating_reopens_and_it_is_resolved_again(platform):
    async with httpx.AsyncClient(timeout=10) as client:
        point = await grid_point(client, platform.url("grid"), index=5)
        created = await submit(client, platform, point)
        rid = created["request_id"]
        w = await work_item(client, platform, rid)
        worker = as_worker(w)
        for step, body in (("accept", None), ("resolve", {"resolution_note": "Swept"})):
            assert (await client.post(f"{platform.url('grid')}/v1/requests/{rid}/{step}", json=body,
                                      headers=worker)).status_code == 200
        await resident_view(client, platform, created, want=lambda v: v["status"] == "resolved")
        r = await client.post(f"{platform.url('intake')}/api/v1/requests/{rid}/rating",
                              headers={"X-Request-Token": created["token"]},
                              json={"rating": "unsatisfied", "comment": "Still dirty"})
        assert r.status_code == 200, r.text
        seen = await resident_view(client, platform, created, want=lambda v: v["reopen_count"] == 1
                                   and v["status"] not in ("resolved", "closed"))
        w = await work_item(client, platform, rid, want=lambda w: w.get("status") not in ("resolved",),
                            what="back in the queue")
        r = await client.post(f"{platform.url('grid')}/v1/requests/{rid}/resolve", headers=as_worker(w),
                              json={"resolution_note": "Deep-cleaned"})
        assert r.status_code == 200, r.text
        await resident_view(client, platform, created, want=lambda v: v["status"] == "resolved")
        types, _ = await timeline(client, platform, rid, want=lambda t: t.count("request.resolved") == 2)
        assert "request.reopened" in types
        assert seen["reopen_count"] == 1


async def test_response_limit_missed_escalation_climbs_supervisor_sees_it_kpis_count_it(platform):
    async with httpx.AsyncClient(timeout=10) as client:
        await define_service(client, platform, "e2e_fast_response", response_hours=0.001)
        point = await grid_point(client, platform.url("grid"), index=6)
        created = await submit(client, platform, point, service="e2e_fast_response", attributes={})
        rid = created["request_id"]
        types, body = await timeline(client, platform, rid, want=lambda t: t.count("request.escalated") >= 2,
                                     what="two escalations")
        levels = [e["data"]["to_level"] for e in body["timeline"] if e["type"].endswith("request.escalated")]
        assert levels[:2] == ["community", "street"], levels
        w = await work_item(client, platform, rid, want=lambda w: w.get("level") == "street", what="moved up")
        assert w["escalations"]

        async def supervisor_sees():
            r = await client.get(f"{platform.url('audit')}/supervision/escalated", headers=token("supervisor"))
            return [e for e in r.json() if e["request_id"] == rid] if r.status_code == 200 else None

        await eventually(supervisor_sees, what="supervisor's escalated list")
        from datetime import date, timedelta

        # audit's days are the district's (Asia/Shanghai), not this machine's: around midnight there
        # they differ, so the window spans the days on either side of today
        today = date.today()

        async def kpis_count_it():  # audit adds its KPI deltas to the counters every AUDIT_KPI_FLUSH_SECONDS
            r = await client.get(f"{platform.url('audit')}/kpis", headers=token("supervisor"),
                                 params={"dimension": "grid", "key": point["grid"],
                                         "from": (today - timedelta(days=1)).isoformat(),
                                         "to": (today + timedelta(days=1)).isoformat()})
            assert r.status_code == 200, r.text
            k = r.json()
            return k if k["received"] >= 1 and (k.get("escalated", 0) >= 1 or k.get("overdue", 0) >= 1) else None

        await eventually(kpis_count_it, what="the grid's KPIs counting the escalated request")


async def test_request_outside_every_grid_lands_in_the_streets_unlocated_queue_and_is_handled(platform):
    async with httpx.AsyncClient(timeout=10) as client:
        created = await submit(client, platform, {"lat": 31.23, "lon": 121.47})  # far outside the demo city
        rid = created["request_id"]
        w = await work_item(client, platform, rid)
        assert w["holder"] == "unlocated"
        point = await grid_point(client, platform.url("grid"), index=7)
        r = await client.post(f"{platform.url('grid')}/v1/requests/{rid}/transfer", headers=token("supervisor"),
                              json={"to_grid": point["grid"], "reason": "Resident confirmed the address by phone"})
        assert r.status_code == 200, r.text
        w = await work_item(client, platform, rid, want=lambda w: w.get("grid") == point["grid"]
                            and w.get("holder") in ("A", "B"), what="assigned after transfer")
        r = await client.post(f"{platform.url('grid')}/v1/requests/{rid}/accept", headers=as_worker(w))
        assert r.status_code == 200, r.text
        types, _ = await timeline(client, platform, rid, want=lambda t: "request.accepted" in t)
        assert "request.transferred" in types
