"""Open cases imported from the hotline system a city replaces, on the real stack: a case imported
with its original received time is late from the first minute, supervision escalates it up the
chain and lists it overdue, its timeline starts at the original time, and the import is in the
staff access trail. A case the legacy system had passed to a department is late on its report-back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.conftest import token
from tests.e2e.helpers import eventually, grid_point

pytestmark = [pytest.mark.infra]

ADMIN = token("admin", sub="import-admin")
SYSTEM = "e2e-legacy-hotline"


def parse(t: str) -> datetime:
    return datetime.fromisoformat(t.replace("Z", "+00:00")).astimezone(UTC)


async def define_service(client: httpx.AsyncClient, intake: str, code: str, **over) -> None:
    """A service on calendar hours: its clocks run whatever the hour the suite runs at."""
    body = {"code": code, "name_zh": "导入测试", "name_en": f"Import test {code}", "group": "test",
            "handled_by": over.pop("handled_by", ["grid"]), "departments": over.pop("departments", []),
            "time_limits": {"response_hours": 2, "resolution_hours": 24, "report_back_hours": 4,
                            "calendar": "calendar"}}
    r = await client.post(f"{intake}/api/v1/services", json=body, headers=ADMIN)
    assert r.status_code in (201, 409), r.text


async def import_cases(client: httpx.AsyncClient, intake: str, *items: dict) -> dict:
    r = await client.post(f"{intake}/api/v1/imports/requests", json={"system": SYSTEM, "items": list(items)},
                          headers={**ADMIN, "X-Change-Reason": "go-live: open cases of the old hotline"})
    assert r.status_code == 200, r.text
    return r.json()


async def timeline_with(client: httpx.AsyncClient, audit: str, rid: str, want, what: str) -> dict:
    async def check():
        r = await client.get(f"{audit}/requests/{rid}/timeline", headers=token("auditor"))
        return r.json() if r.status_code == 200 and want(r.json()) else None

    return await eventually(check, what=what)


def escalations(body: dict, clock: str) -> list[dict]:
    return [e["data"] for e in body["timeline"] if e["type"].endswith("request.escalated") and e["data"]["clock"] == clock]


async def test_an_imported_late_case_is_escalated_up_the_chain_and_listed_overdue(platform):
    intake, audit = platform.url("intake"), platform.url("audit")
    async with httpx.AsyncClient(timeout=15) as client:
        await define_service(client, intake, "e2e_import_late")
        point = await grid_point(client, platform.url("grid"), index=9)
        received_at = (datetime.now(UTC) - timedelta(hours=10)).replace(microsecond=0)
        out = await import_cases(client, intake, {
            "external_ref": "OLD-0001", "received_at": received_at.isoformat(), "service_code": "e2e_import_late",
            "location": {"lat": point["lat"], "lon": point["lon"]}, "description": "Broken railing, reported by phone"})
        [item] = out["items"]
        assert item["status"] == "imported" and parse(item["received_at"]) == received_at
        assert parse(item["response_due"]) == received_at + timedelta(hours=2)
        rid = item["request_id"]

        # 2 h limit, 10 h ago: four periods late; from the grid it climbs community, street, district
        body = await timeline_with(client, audit, rid, lambda b: len(escalations(b, "response")) >= 3,
                                   "three escalations of the response clock")
        assert [e["to_level"] for e in escalations(body, "response")] == ["community", "street", "district"]
        first = body["timeline"][0]
        assert first["type"].endswith("request.received") and parse(first["time"]) == received_at
        assert first["data"]["imported_from"]["reference"] == "OLD-0001"

        r = await client.get(f"{audit}/supervision/overdue", headers=token("supervisor"))
        assert r.status_code == 200, r.text
        [row] = [o for o in r.json() if o["request_id"] == rid and o["clock"] == "response"]
        assert row["overdue_calendar_hours"] >= 7.9 and row["level"] == "district"
        r = await client.get(f"{audit}/supervision/escalated", headers=token("supervisor"))
        assert any(e["request_id"] == rid for e in r.json()), r.text

        # the import itself is an administrative change in the trail, with its reason
        async def recorded():
            r = await client.get(f"{audit}/audit/staff-access", headers=token("auditor"),
                                 params={"request_id": f"requests:{out['batch_id']}"})
            return r.json() if r.status_code == 200 and r.json() else None

        [act] = await eventually(recorded, what="the import in the staff access trail")
        assert act["action"] == "requests.import" and act["staff_id"] == "import-admin"
        assert act["reason"].startswith("go-live") and act["details"]["imported"] == 1

        # the resident's tracking link shows the original time; the same import again changes nothing
        r = await client.get(f"{intake}/api/v1/requests/{rid}", headers={"X-Request-Token": item["token"]})
        assert r.status_code == 200 and parse(r.json()["received_at"]) == received_at
        again = await import_cases(client, intake, {
            "external_ref": "OLD-0001", "received_at": received_at.isoformat(), "service_code": "e2e_import_late",
            "location": {"lat": point["lat"], "lon": point["lon"]}, "description": "Broken railing, reported by phone"})
        assert again["items"][0]["status"] == "already_imported" and again["items"][0]["request_id"] == rid


async def test_a_case_the_legacy_system_had_dispatched_is_late_on_its_report_back(platform):
    intake, audit = platform.url("intake"), platform.url("audit")
    async with httpx.AsyncClient(timeout=15) as client:
        await define_service(client, intake, "e2e_import_enforce", handled_by=["grid", "department"],
                             departments=["chengguan"])
        point = await grid_point(client, platform.url("grid"), index=10)
        received_at = (datetime.now(UTC) - timedelta(hours=7)).replace(microsecond=0)
        dispatched_at = received_at + timedelta(hours=1)
        out = await import_cases(client, intake, {
            "external_ref": "OLD-0002", "received_at": received_at.isoformat(), "service_code": "e2e_import_enforce",
            "dispatched_at": dispatched_at.isoformat(), "location": {"lat": point["lat"], "lon": point["lon"]},
            "description": "Stall blocking the pavement"})
        rid = out["items"][0]["request_id"]
        body = await timeline_with(client, audit, rid, lambda b: escalations(b, "report_back"),
                                   "the report-back escalation")
        [dispatch] = [e["data"] for e in body["timeline"] if e["type"].endswith("request.department_dispatched")]
        assert parse(dispatch["dispatched_at"]) == dispatched_at
        assert parse(dispatch["report_by"]) == dispatched_at + timedelta(hours=4)
        assert escalations(body, "report_back")[0]["department"] == "chengguan"
        r = await client.get(f"{audit}/supervision/overdue", headers=token("supervisor"))
        assert any(o["request_id"] == rid and o["clock"] == "report_back" for o in r.json()), r.text


async def test_bad_imports_are_problem_details_naming_the_field(platform):
    intake = platform.url("intake")
    path = f"{intake}/api/v1/imports/requests"
    case = {"external_ref": "OLD-9", "received_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            "service_code": "greening", "location": {"address_text": "No. 3 Garden Lane"}}
    async with httpx.AsyncClient(timeout=15) as client:
        r = await client.post(path, json={"system": SYSTEM, "items": [case]}, headers=ADMIN)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert [e["field"] for e in r.json()["errors"]] == ["items/0/received_at"]
        past = {**case, "received_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}
        r = await client.post(path, json={"system": SYSTEM, "items": [past, past]}, headers=ADMIN)
        assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["items/1/external_ref"]
        r = await client.post(path, json={"system": SYSTEM, "items": [past]}, headers=token("operator"))
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
