"""Access to personal data and administrative changes end up in audit's trail (issue 22, item 4).

An operator reads a reporter's contact details (a reason is required), an admin changes the
catalogue, a supervisor changes someone's duty: each becomes a ``staff.access.v1`` event that audit
appends to its tamper-evident trail and lists per staff member and per request -- who, what and
why, never the contact details themselves.
"""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import token
from tests.e2e.helpers import eventually, grid_point
from tests.e2e.test_flows import submit

# the platform and its demo city take minutes to start on a busy machine
pytestmark = [pytest.mark.infra, pytest.mark.timeout(900)]
NAME, PHONE, EMAIL = "王小明", "13800138000", "wang@example.cn"


async def test_contact_reads_and_admin_changes_are_listed_per_person_and_per_request(platform):
    auditor = token("auditor", sub="auditor-7")
    async with httpx.AsyncClient(timeout=10) as client:
        point = await grid_point(client, platform.url("grid"))
        created = await submit(client, platform, point)
        rid = created["request_id"]
        contact = f"{platform.url('intake')}/api/v1/requests/{rid}/contact"
        r = await client.get(contact, headers=token("operator", sub="op-audit-1"))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
        r = await client.get(contact, params={"reason": "calling back about the stairwell"},
                             headers=token("operator", sub="op-audit-1"))
        assert r.status_code == 200 and r.json()["contact"]["phone"] == PHONE

        svc = (await client.get(f"{platform.url('intake')}/api/v1/services/sanitation")).json()
        spec = {k: v for k, v in svc.items() if k not in ("code", "active", "revision", "changed_at")}
        r = await client.put(f"{platform.url('intake')}/api/v1/services/sanitation", json=spec,
                             headers={**token("admin", sub="admin-audit-1"), "X-Change-Reason": "yearly review"})
        assert r.status_code == 200, r.text

        r = await client.put(f"{platform.url('grid')}/v1/staff/s{point['grid']}-1/duty", json={"duty": "off"},
                             headers={**token("supervisor", sub="sup-audit-1"), "X-Change-Reason": "sick"})
        assert r.status_code == 200, r.text

        async def listed(**query):
            r = await client.get(f"{platform.url('audit')}/audit/staff-access", params=query, headers=auditor)
            assert r.status_code == 200, r.text
            return r.json() or None

        reads = await eventually(lambda: listed(staff_id="op-audit-1"), what="the contact read in audit")
        assert [(e["type"], e["subject"], e["role"], e["reason"]) for e in reads] == [
            ("civicgrid.access.contact_read", rid, "operator", "calling back about the stairwell")]
        assert [e["staff_id"] for e in await listed(request_id=rid)] == ["op-audit-1"]
        changes = await eventually(lambda: listed(staff_id="admin-audit-1"), what="the catalogue change")
        assert [(e["action"], e["target"], e["reason"]) for e in changes] == [
            ("catalogue.update", "sanitation", "yearly review")]
        duty = await eventually(lambda: listed(staff_id="sup-audit-1"), what="the duty change")
        assert [(e["action"], e["target"], e["details"]["duty"]) for e in duty] == [
            ("roster.duty", f"s{point['grid']}-1", "off")]
        everything = str(reads) + str(changes) + str(duty)
        assert NAME not in everything and PHONE not in everything and EMAIL not in everything

        # the read is in the tamper-evident trail: it has an inclusion proof once checkpointed
        assert (await client.post(f"{platform.url('audit')}/audit/checkpoints", headers=auditor)).status_code == 200
        proof = await client.get(f"{platform.url('audit')}/audit/events/{reads[0]['event_id']}/proof", headers=auditor)
        assert proof.status_code == 200, proof.text
        assert (await client.get(f"{platform.url('audit')}/audit/staff-access", headers=auditor)).status_code == 422
        assert (await client.get(f"{platform.url('audit')}/audit/staff-access", params={"staff_id": "x"},
                                 headers=token("supervisor"))).status_code == 403
