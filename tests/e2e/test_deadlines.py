"""One deadline for every request, on the real stack: the working calendar is set through intake's
admin API, reaches every service without a restart, and the deadlines the resident, the grid worker
and supervision see are the same instant, to the second.

The calendar used is made for the test, around today: the next weekday is a public holiday and the
Saturday after it a make-up working day, so that a limit of a few working days crosses a holiday,
a weekend and a make-up day whatever day the suite runs. The calendars found at the start are put
back at the end (as new revisions), so later tests compute on what they expect.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from civicgrid_contracts.calendar import OFFICE_ZONE, CalendarYear, WorkingCalendar, due_at
from tests.e2e.conftest import token
from tests.e2e.helpers import eventually, grid_point

pytestmark = [pytest.mark.infra]

ADMIN = token("admin", sub="calendar-admin")
AUDITOR = token("auditor")
FOLLOWERS = ("intake", "grid", "matching", "audit")  # every service holds the bus's calendar


def parse(t: str | None) -> datetime | None:
    return datetime.fromisoformat(t.replace("Z", "+00:00")).astimezone(UTC) if t else None


def calendar_around(today: date) -> tuple[dict[int, dict], date, date]:
    """Per year, the calendar bodies for the test; and its holiday and make-up day."""
    holiday = today + timedelta(days=1)
    while holiday.isoweekday() > 5:
        holiday += timedelta(days=1)
    makeup = holiday + timedelta(days=(6 - holiday.isoweekday()) % 7 or 7)  # the Saturday after it
    years = {}
    for y in sorted({today.year, (today + timedelta(days=60)).year}):
        years[y] = {"holidays": [d.isoformat() for d in (holiday,) if d.year == y],
                    "makeup_workdays": [d.isoformat() for d in (makeup,) if d.year == y],
                    "source": "civicgrid end-to-end test"}
    return years, holiday, makeup


def working(bodies: dict[int, dict]) -> WorkingCalendar:
    return WorkingCalendar([CalendarYear(year=y, **b) for y, b in bodies.items()])


async def set_year(client: httpx.AsyncClient, intake: str, year: int, body: dict) -> int:
    r = await client.put(f"{intake}/api/v1/calendar/{year}", json=body, headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["revision"]


async def everyone_holds(client: httpx.AsyncClient, platform, revisions: dict[int, int]) -> None:
    async def check():
        for svc in FOLLOWERS:
            held = (await client.get(f"{platform.url(svc)}/calendar")).json()["years"]
            if any(held.get(str(y), {}).get("revision") != rev for y, rev in revisions.items()):
                return None
        return True

    await eventually(check, what=f"every service holding calendar revisions {revisions}")


@pytest.fixture(scope="module")
async def calendar_for_test(platform):
    """Set the test calendar on the platform (and put back what was there afterwards)."""
    intake = platform.url("intake")
    today = datetime.now(OFFICE_ZONE).date()
    bodies, holiday, makeup = calendar_around(today)
    async with httpx.AsyncClient(timeout=10) as client:
        before = {y: (await client.get(f"{intake}/api/v1/calendar/{y}")).json()["calendar"] for y in bodies}
        revisions = {y: await set_year(client, intake, y, b) for y, b in bodies.items()}
        await everyone_holds(client, platform, revisions)
        try:
            yield bodies, holiday, makeup
        finally:
            for y, cal in before.items():
                await set_year(client, intake, y, {k: v for k, v in cal.items() if k != "year"})


async def define_service(client, intake: str, code: str, *, response: float, resolution: float, kind: str) -> None:
    body = {"code": code, "name_zh": "期限测试", "name_en": "Deadline test", "group": "test", "handled_by": ["grid"],
            "time_limits": {"response_hours": response, "resolution_hours": resolution, "report_back_hours": 10,
                            "calendar": kind}}
    r = await client.post(f"{intake}/api/v1/services", json=body, headers=ADMIN)
    assert r.status_code in (201, 409), r.text


async def submit(client, platform, point, code: str) -> dict:
    body = {"service_code": code, "location": {"lat": point["lat"], "lon": point["lon"]},
            "description": f"deadline check {code}", "channel": "web"}
    r = await client.post(f"{platform.url('intake')}/api/v1/requests", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def deadlines_everywhere(client, platform, rid: str) -> dict[str, dict[str, datetime]]:
    """The request's deadlines as each place shows them."""
    intake, grid, audit = platform.url("intake"), platform.url("grid"), platform.url("audit")

    async def assigned():
        r = await client.get(f"{grid}/v1/requests/{rid}", headers=ADMIN)
        return r.json() if r.status_code == 200 and r.json().get("assignee_id") else None

    try:
        work = await eventually(assigned, what="assignment")
    except AssertionError as exc:  # say where the request stands in intake and grid
        seen_by_intake = (await client.get(f"{intake}/api/v1/requests/{rid}", headers=ADMIN)).text
        seen_by_grid = (await client.get(f"{grid}/v1/requests/{rid}", headers=ADMIN)).text
        raise AssertionError(f"{exc}\nintake: {seen_by_intake[:600]}\ngrid: {seen_by_grid[:600]}") from None
    worker = token("grid_worker", sub=work["assignee_id"], area=work["grid"])
    queue = (await client.get(f"{grid}/v1/queue", headers=worker)).json()
    entry = next(q for q in queue if q["request_id"] == rid)

    async def audited():
        r = await client.get(f"{audit}/requests/{rid}/timeline", headers=AUDITOR)
        return r.json()["state"] if r.status_code == 200 and r.json()["state"].get("resolution_due") else None

    state = await eventually(audited, what="audit clocks")
    native = (await client.get(f"{intake}/api/v1/requests/{rid}", headers=ADMIN)).json()
    open311 = (await client.get(f"{intake}/open311/v2/requests/{rid}.json")).json()[0]
    return {
        "intake": {"response": parse(native["response_due"]), "resolution": parse(native["expected_at"])},
        "open311": {"resolution": parse(open311["expected_datetime"])},
        "grid queue": {"response": parse(entry["due_response"]), "resolution": parse(entry["due_resolution"])},
        "grid view": {"response": parse(work["due_response"]), "resolution": parse(work["due_resolution"])},
        "audit": {"response": parse(state["response_due"]), "resolution": parse(state["resolution_due"])},
        "_received": {"at": parse(native["received_at"])}, "_worker": {"headers": worker},
    }


def agreed(seen: dict[str, dict]) -> dict[str, datetime]:
    """The one instant per clock that every place shows (fails naming the places that differ)."""
    out = {}
    for clock in ("response", "resolution"):
        values = {place: v[clock] for place, v in seen.items() if not place.startswith("_") and clock in v}
        assert len(set(values.values())) == 1, f"{clock} deadlines differ: {values}"
        out[clock] = next(iter(values.values()))
    return out


async def test_every_service_shows_the_same_deadline_across_holiday_weekend_and_make_up_day(platform,
                                                                                          calendar_for_test):
    bodies, holiday, makeup = calendar_for_test
    cal = working(bodies)
    async with httpx.AsyncClient(timeout=10) as client:
        intake = platform.url("intake")
        await define_service(client, intake, "deadline_business", response=2, resolution=60, kind="business")
        await define_service(client, intake, "deadline_wallclock", response=1, resolution=30, kind="calendar")
        point = await grid_point(client, platform.url("grid"), index=7)
        for code, hours, kind in (("deadline_business", (2, 60), "business"),
                                  ("deadline_wallclock", (1, 30), "calendar")):
            created = await submit(client, platform, point, code)
            seen = await deadlines_everywhere(client, platform, created["request_id"])
            due = agreed(seen)
            received = seen["_received"]["at"]
            assert parse(created["expected_at"]) == due["resolution"]
            # and it is the instant the one calculation gives on the calendar set above
            assert due["response"] == due_at(received, hours[0], kind, cal)
            assert due["resolution"] == due_at(received, hours[1], kind, cal)
            if kind == "business":  # 60 working hours from today cross the holiday, a weekend and the make-up day
                start, end = received.astimezone(OFFICE_ZONE).date(), due["resolution"].astimezone(OFFICE_ZONE).date()
                assert start < holiday < makeup < end
                assert not cal.is_working_day(holiday) and cal.is_working_day(makeup)

            # a department's report-back deadline: set once by grid, the same in audit
            worker = seen["_worker"]["headers"]
            rid = created["request_id"]
            before = datetime.now(UTC)
            r = await client.post(f"{platform.url('grid')}/v1/requests/{rid}/whistle", headers=worker,
                                  json={"departments": ["chengguan"], "reason": "deadline check",
                                        "report_back_hours": 10})
            after = datetime.now(UTC)
            assert r.status_code == 200, r.text
            (dispatch_id, dispatch), = r.json()["dispatches"].items()
            report_by = parse(dispatch["report_by"]) if isinstance(dispatch["report_by"], str) \
                else dispatch["report_by"]
            assert due_at(before, 10, kind, cal) <= report_by <= due_at(after, 10, kind, cal)

            async def audit_report_by(rid=rid, dispatch_id=dispatch_id):
                r = await client.get(f"{platform.url('audit')}/requests/{rid}/timeline", headers=AUDITOR)
                return r.json()["state"]["dispatches"].get(dispatch_id) if r.status_code == 200 else None

            audited = await eventually(audit_report_by, what="audit's report-back clock")
            assert parse(audited["report_by"]) == report_by


async def test_a_calendar_change_reaches_every_service_and_leaves_set_deadlines_alone(platform, calendar_for_test):
    bodies, holiday, makeup = calendar_for_test
    async with httpx.AsyncClient(timeout=10) as client:
        intake = platform.url("intake")
        await define_service(client, intake, "deadline_business", response=2, resolution=60, kind="business")
        point = await grid_point(client, platform.url("grid"), index=8)
        first = await submit(client, platform, point, "deadline_business")
        before_change = agreed(await deadlines_everywhere(client, platform, first["request_id"]))

        # next year's calendar, and one more holiday this year (the working day after the test's one)
        changed = {y: dict(b) for y, b in bodies.items()}
        extra = holiday + timedelta(days=1)
        while extra.isoweekday() > 5 or extra == makeup:
            extra += timedelta(days=1)
        changed[extra.year]["holidays"] = sorted({*changed[extra.year]["holidays"], extra.isoformat()})
        next_year = min(bodies) + 1
        changed.setdefault(next_year, {"source": "civicgrid end-to-end test"})
        changed[next_year] = {**changed[next_year], "periods": [{"start": "08:30", "end": "12:00"},
                                                               {"start": "13:00", "end": "17:30"}]}
        revisions = {}
        for y in sorted({extra.year, next_year}):
            revisions[y] = await set_year(client, intake, y, changed[y])
        await everyone_holds(client, platform, revisions)  # no service was restarted

        # the deadline set before the change stays, everywhere
        assert agreed(await deadlines_everywhere(client, platform, first["request_id"])) == before_change
        # a clock started after it runs on the new calendar
        elsewhere = await grid_point(client, platform.url("grid"), index=9)  # not a duplicate of the first
        second = await submit(client, platform, elsewhere, "deadline_business")
        seen = await deadlines_everywhere(client, platform, second["request_id"])
        due = agreed(seen)
        new_cal = working(changed)
        received = seen["_received"]["at"]
        assert due["resolution"] == due_at(received, 60, "business", new_cal)
        assert due["resolution"] != due_at(received, 60, "business", working(bodies))
        for y in revisions:  # back to the module's test calendar (the fixture restores the original at the end)
            await set_year(client, intake, y, bodies.get(y, {}))
