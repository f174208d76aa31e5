"""A resident's request through all four services, asserted at every stage: what the resident
sees (native API and Open311), what staff see, and what supervision recorded."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import token
from tests.e2e.helpers import eventually, grid_point

pytestmark = [pytest.mark.infra]


async def submit(client, platform, point, *, service="sanitation", description="Rubbish piled in the stairwell",
                 attributes=None):
    body = {"service_code": service, "location": {"lat": point["lat"], "lon": point["lon"]},
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
