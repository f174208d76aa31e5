"""The console in a real headless Chromium against the real stack: the flows of issue 23, with a
screenshot and an axe-core check (no serious or critical violation) on every page visited."""

from __future__ import annotations

import json
import random
import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from civicgrid_runtime.auth import mint_token
from tests.support.console import Checked, sign_in_as, until
from tests.support.platform import BIN, ROOT

pytestmark = [pytest.mark.infra]
SECRET = "civicgrid-development-secret-change-me"
TZ = ZoneInfo("Asia/Shanghai")
#: what one flow leaves for the next (the auditor reads the resident's request)
shared: dict[str, str] = {}


def bearer(role: str, sub: str = "browser-test", area: str = "") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(secret=SECRET, sub=sub, role=role, area=area)}"}


def first_grid(stack, *, any_of: int = 1, margin: float = 0.25) -> dict:
    """A point in the first demo grid (whose staff the sign-in page lists first; or in one of the
    first ``any_of``), somewhere in its inner part: a rerun on the same stack should not be merged
    into the last run's report as its duplicate."""
    r = httpx.get(f"{stack['grid']}/v1/map/grids", params={"limit": any_of}, timeout=10)
    g = random.choice(r.json()["grids"])
    min_lon, min_lat, max_lon, max_lat = g["bbox"]
    fx, fy = random.uniform(margin, 1 - margin), random.uniform(margin, 1 - margin)
    return {"grid": g["grid"], "lat": min_lat + fy * (max_lat - min_lat), "lon": min_lon + fx * (max_lon - min_lon)}


def sign_in(c: Checked, account: str) -> None:
    c.page.goto("/signin")
    c.check("signin")
    c.page.locator(f"button[data-account='{account}']").click()
    c.page.wait_for_load_state()


def supervisor_totals(c: Checked) -> dict[str, int]:
    c.page.goto("/supervise")
    el = c.page.locator("p.totals")
    assert el.count() == 1, c.page.locator("main").inner_text()
    return {k: int(el.get_attribute(f"data-{k}")) for k in ("open", "overdue", "escalated")}


def kpi(c: Checked, name: str) -> int:
    """One count on the district's KPI dashboard (today's requests, every area)."""
    c.page.goto("/supervise/kpis?dimension=all&key=*")
    return int(c.page.locator(f"[data-kpi={name}]").inner_text())


def test_resident_reports_worker_resolves_resident_unsatisfied_reopens_supervisor_counts_change(stack, browser):
    g = first_grid(stack)
    supervisor = Checked(browser, stack["console"], "supervisor")
    sign_in(supervisor, f"d{g['grid'][:6]}")  # the district's supervisor: the whole area at a glance
    before = supervisor_totals(supervisor)
    supervisor.check("dashboard-before")
    received_before, unsatisfied_before = kpi(supervisor, "received"), kpi(supervisor, "unsatisfied")

    resident = Checked(browser, stack["console"], "resident", mobile=True)
    p = resident.page
    p.goto("/")
    resident.check("home")
    p.goto("/report")
    resident.check("catalogue")
    p.locator("#q").fill("环境")  # Simplified finds the catalogue's Traditional 環境衛生 (htmx swaps the list in)
    p.wait_for_function("() => !document.querySelector(\"a[data-service='public_facility']\")")
    p.wait_for_load_state("networkidle")
    assert p.locator("a[data-service]").count() < 16, "the list is filtered"
    p.locator("a[data-service='sanitation']").click()
    p.wait_for_selector("#pick-map .leaflet-interactive")  # the grid map drew (served by the console)
    resident.check("report-form")
    p.locator("#lat").fill(f"{g['lat']:.6f}")
    p.locator("#lon").fill(f"{g['lon']:.6f}")
    p.locator("#attr_waste_type").select_option("household")
    p.locator("#description").fill("楼道里堆满了垃圾 browser test")
    p.locator("#report-form button[type=submit]").click()
    p.wait_for_url(re.compile(r"/track/[^/?]+\?token="))
    rid = re.search(r"/track/([^/?]+)", p.url).group(1)
    shared["rid"] = rid
    assert p.locator("[data-status]").first.get_attribute("data-status") in ("received", "assigned")
    resident.check("tracking")

    worker = Checked(browser, stack["console"], "worker", mobile=True)
    sign_in(worker, f"s{g['grid']}-1")
    w = worker.page

    def in_queue():
        w.goto("/work")
        return w.locator(f"li[data-request='{rid}']").count() == 1

    until(in_queue, what="the request in the worker's queue")
    worker.check("queue")
    deadlines = [t for t in w.locator("ol.queue time").evaluate_all("els => els.map(e => e.dateTime)")]
    assert deadlines == sorted(deadlines), "the queue is in deadline order"
    w.locator(f"li[data-request='{rid}'] a").click()
    worker.check("request")
    w.locator("#accept").click()
    w.wait_for_selector(".flash.ok")
    assert w.locator("[data-status]").first.get_attribute("data-status") == "accepted"
    worker.check("accepted")
    w.locator("#resolution_note").fill("已清理 cleared")
    w.locator("#resolve").click()
    w.wait_for_selector(".flash.ok")
    worker.check("resolved")

    def resident_sees_resolved():
        p.reload()
        return p.locator("#rating-form").count() == 1

    until(resident_sees_resolved, what="the resident sees it resolved")
    resident.check("rate")
    p.locator("input[name=rating][value=unsatisfied]").check()
    p.locator("#comment").fill("还是很脏")
    p.locator("#rating-form button[type=submit]").click()
    p.wait_for_selector(".flash.ok")
    assert p.locator("[data-status]").first.get_attribute("data-status") == "reopened"
    resident.check("reopened")

    def counts_changed():
        now = supervisor_totals(supervisor)
        return now if now["open"] > before["open"] else None

    after = until(counts_changed, what="the supervisor's open count to grow")
    assert after["open"] >= before["open"] + 1
    supervisor.check("dashboard-after")
    # audit's counters follow the events a moment later
    until(lambda: kpi(supervisor, "received") > received_before and kpi(supervisor, "unsatisfied") > unsatisfied_before,
          what="the KPI dashboard to count the request and its unsatisfied rating")
    supervisor.check("kpis")
    for c in (resident, worker, supervisor):
        c.close()


def test_volunteer_accepts_an_offer_and_checks_in_and_out(stack, browser):
    g = first_grid(stack, any_of=4)
    tomorrow_10 = (datetime.now(TZ) + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    r = httpx.post(f"{stack['intake']}/api/v1/requests", timeout=10, json={
        "service_code": "elderly_home_care", "location": {"lat": g["lat"], "lon": g["lon"]},
        "attributes": {"care_type": ["company"], "resident_age": 82}, "preferred_time": tomorrow_10.isoformat(),
        "description": "My mother needs company tomorrow (browser test)", "channel": "app"})
    assert r.status_code == 201 and not r.json().get("duplicate_of"), r.text
    rid = r.json()["request_id"]

    def offered():
        m = httpx.get(f"{stack['matching']}/matches/{rid}", headers=bearer("supervisor"), timeout=10)
        offers = [o for o in m.json().get("offers", []) if o["status"] == "open"] if m.status_code == 200 else []
        return offers[0]["volunteer_id"] if offers else None

    vid = until(offered, what="matching's offers")
    volunteer = Checked(browser, stack["console"], "volunteer", mobile=True)
    sign_in_as(volunteer, "volunteer", vid)
    v = volunteer.page

    def offer_shown():
        v.goto("/volunteer")
        return v.locator(f"[data-request='{rid}'] .accept-offer").count() == 1

    until(offer_shown, what="the offer on the volunteer's page")
    assert v.locator(f"[data-request='{rid}']").inner_text().count("为什么选我") == 1
    volunteer.check("offer")
    v.locator(f"[data-request='{rid}'] .accept-offer").click()
    v.wait_for_selector(".flash.ok")
    volunteer.check("booked")
    v.locator(f"[data-booking='{rid}'] .check-in").click()
    v.wait_for_selector(f"[data-booking='{rid}'] .check-out")
    volunteer.check("checked-in")
    v.locator(f"[data-booking='{rid}'] .check-out").click()
    v.wait_for_selector(f"[data-hours-entry='{rid}']")
    assert v.locator(f"[data-hours-entry='{rid}'] td").nth(2).inner_text().strip(), "checked out"
    volunteer.check("checked-out")
    volunteer.close()


def test_auditor_opens_a_timeline_as_of_an_earlier_time(stack, browser):
    rid = shared.get("rid")
    assert rid, "the resident flow runs first and leaves its request"
    auditor = Checked(browser, stack["console"], "auditor")
    sign_in(auditor, "auditor-1")
    a = auditor.page

    def full_timeline():
        a.goto(f"/audit/timeline?rid={rid}")
        return a.locator("tr[data-event-type]").count() >= 4

    until(full_timeline, what="the audit timeline")
    auditor.check("timeline")
    times = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in
             a.locator("tr[data-event-type] time").evaluate_all("els => els.map(e => e.dateTime)")]
    total = len(times)
    # a moment between two events more than a second apart (the field has whole seconds)
    k = next(i for i in range(total - 1) if (times[i + 1] - times[i]).total_seconds() > 1.5)
    moment = times[k].replace(microsecond=0) + timedelta(seconds=1)
    a.locator("#as_of").fill(moment.astimezone(TZ).strftime("%Y-%m-%dT%H:%M:%S"))
    a.locator("#timeline-form button").click()
    a.wait_for_selector("[data-as-of]")
    earlier = a.locator("tr[data-event-type]").count()
    assert earlier == k + 1 and earlier < total, (earlier, k, total)
    auditor.check("timeline-as-of")
    a.goto("/supervise/evaluation")
    auditor.check("evaluation")
    assert a.locator("a[download]").get_attribute("href").startswith("/supervise/evaluation.csv")
    a.goto("/audit/logs")
    auditor.check("logs")
    assert a.locator("[data-verified]").count() >= 1
    auditor.close()


def submit_by_api(stack, g: dict, service: str = "sanitation", **extra) -> dict:
    body = {"service_code": service, "location": {"lat": g["lat"], "lon": g["lon"]}, "channel": "app",
            "attributes": {"waste_type": "household"} if service == "sanitation" else {},
            "description": "Rubbish by the gate (browser test)", **extra}
    r = httpx.post(f"{stack['intake']}/api/v1/requests", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def a_new_report(stack) -> tuple[dict, str]:
    """A report of its own in the first grid: a point that lands within the duplicate distance of an
    earlier test's report is merged into it (and never assigned), so another point is tried."""
    for _ in range(30):  # a dozen tests report in the same grid: the whole grid is tried, not its middle
        g = first_grid(stack, margin=0.05)
        created = submit_by_api(stack, g)
        if created["status"] != "merged":
            shared[f"token:{created['request_id']}"] = created["token"]  # the resident's, for their page
            return g, created["request_id"]
    raise AssertionError("every point tried was merged into an earlier report")


def test_worker_whistles_a_department_which_acknowledges_and_reports_back(stack, browser):
    g, rid = a_new_report(stack)
    worker = Checked(browser, stack["console"], "worker-whistle", mobile=True)
    sign_in(worker, f"s{g['grid']}-1")
    w = worker.page

    def assigned_here():
        w.goto(f"/work/{rid}")
        return w.locator("#accept").count() == 1

    until(assigned_here, what="the request on the worker's page")
    w.locator("summary", has_text="吹哨").click()
    w.locator("input[name=departments][value=chengguan]").check()
    w.locator("#whistle_reason").fill("占道堆放，需要城管执法")
    w.locator("#report_back_hours").fill("2")
    w.locator("form[action$='/whistle'] button").click()
    w.wait_for_selector(".flash.ok")
    worker.check("whistled")
    worker.close()

    department = Checked(browser, stack["console"], "department", mobile=True)
    sign_in(department, "chengguan")
    d = department.page

    def dispatched():
        d.goto("/dispatches")
        return d.locator(f"section[data-request='{rid}']").count() == 1

    until(dispatched, what="the dispatch on the department's page")
    card = d.locator(f"section[data-request='{rid}']")
    assert card.locator("time").count() == 1, "the report-back deadline is shown"
    department.check("dispatch")
    card.locator("form[action$='/acknowledge'] button").click()
    d.wait_for_selector(".flash.ok")
    card = d.locator(f"section[data-request='{rid}']")
    assert card.locator("form[action$='/acknowledge']").count() == 0
    card.locator("textarea[name=outcome]").fill("已清理并警告 cleared and warned")
    card.locator("form[action$='/report'] button").click()
    d.wait_for_selector(".flash.ok")
    department.check("reported")
    department.close()


def test_a_second_report_nearby_is_told_it_follows_the_first(stack, browser):
    g = first_grid(stack, any_of=6)
    first = submit_by_api(stack, g, service="public_facility", attributes={"facility": "streetlight"},
                          description="Street light out")
    resident = Checked(browser, stack["console"], "resident-duplicate", mobile=True)
    p = resident.page
    p.goto("/report/public_facility")
    p.locator("#lat").fill(f"{g['lat']:.7f}")
    p.locator("#lon").fill(f"{g['lon']:.7f}")
    p.locator("#attr_facility").select_option("streetlight")
    p.locator("#description").fill("路灯不亮 the street light is out")
    p.locator("#report-form button[type=submit]").click()
    p.wait_for_url(re.compile(r"/track/"))
    notice = p.locator("section.notice")
    assert notice.count() == 1, "already reported nearby"
    assert "附近已有人反映过同一问题" in notice.inner_text()
    assert p.locator("[data-status]").first.get_attribute("data-status") == "merged"
    assert first["request_id"] not in p.url
    resident.check("following")
    resident.close()


def test_the_other_pages_in_english_and_chinese(stack, browser):
    """The pages no flow above passes through: English from the switch, a grid's requests from the
    supervisor's map, an event's inclusion proof, the catalogue editor's save, a grid's roster."""
    g = first_grid(stack)
    supervisor = Checked(browser, stack["console"], "supervisor-english")
    sign_in(supervisor, f"c{g['grid'][:12]}")
    s = supervisor.page
    s.locator("form[action='/lang'] button").click()
    s.wait_for_load_state()
    assert s.locator("html").get_attribute("lang") == "en"
    s.goto(f"/supervise/grid/{g['grid']}")
    assert "Requests of grid" in s.locator("h1").inner_text()
    supervisor.check("grid-requests-en")
    s.goto("/work")
    supervisor.check("queue-en")
    supervisor.close()

    auditor = Checked(browser, stack["console"], "auditor-proof")
    sign_in(auditor, "auditor-1")
    a = auditor.page
    rid = submit_by_api(stack, first_grid(stack, any_of=8))["request_id"]

    def event_id():
        a.goto(f"/audit/timeline?rid={rid}")
        links = a.locator("a[href^='/audit/proof?event_id=']")
        return links.first.get_attribute("href") if links.count() else None

    href = until(event_id, what="the request's first audited event")
    a.goto(href)
    auditor.check("proof")
    assert a.locator("dl.facts, .flash.error").count() >= 1, "a proof, or why there is none yet"
    auditor.close()

    admin = Checked(browser, stack["console"], "admin-edit")
    sign_in(admin, "admin")
    d = admin.page
    d.goto("/admin/catalogue?edit=greening")
    d.locator("#response_hours").fill("6")
    d.locator("#service-form button").click()
    d.wait_for_selector(".flash.ok")
    admin.check("catalogue-saved")
    d.goto("/admin/catalogue?edit=greening")
    assert d.locator("#response_hours").input_value() in ("6", "6.0")
    d.goto(f"/admin/roster?street={g['grid'][:9]}&community={g['grid'][:12]}&grid={g['grid']}")
    assert d.locator("li.post-card").count() >= 1, "the grid's posts with their A and B"
    admin.check("roster")
    admin.close()


def demo_street_map(tmp_path: Path) -> tuple[Path, Path]:
    """A good small map (grid's own generator) and a copy with two defects: one grid's code
    duplicated, one grid's polygon made invalid (a bow tie)."""
    good = tmp_path / "good.geojson"
    subprocess.run([str(BIN / "civicgrid-grid"), "generate-city", "--size", "street", "--seed", "3",
                    "--no-buildings", "--out", str(good)], cwd=ROOT, check=True, capture_output=True, timeout=120)
    fc = json.loads(good.read_text())
    grids = [f for f in fc["features"] if f["properties"]["kind"] == "grid"]
    grids[1]["properties"]["code"] = grids[0]["properties"]["code"]
    (x0, y0), (x1, y1) = grids[2]["geometry"]["coordinates"][0][0], grids[2]["geometry"]["coordinates"][0][2]
    grids[2]["geometry"] = {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y1], [x1, y0], [x0, y1], [x0, y0]]]}
    bad = tmp_path / "defective.geojson"
    bad.write_text(json.dumps(fc))
    return good, bad


def test_admin_imports_a_defective_map_sees_each_defect_then_a_good_one_and_activates(stack, browser, tmp_path):
    good, bad = demo_street_map(tmp_path)
    admin = Checked(browser, stack["console"], "admin")
    sign_in(admin, "admin")
    a = admin.page
    a.goto("/admin/catalogue?edit=sanitation")
    admin.check("catalogue")
    a.goto("/admin/map")
    admin.check("map")
    a.locator("#file").set_input_files(str(bad))
    a.locator("#map-import button").click()
    a.wait_for_selector("[data-defect]")
    kinds = a.locator("[data-defect]").evaluate_all("els => els.map(e => e.dataset.defect)")
    assert "duplicate_code" in kinds and "invalid_geometry" in kinds, kinds
    a.wait_for_selector("#defect-map .leaflet-interactive")
    admin.check("defects")
    a.locator("#file").set_input_files(str(good))
    a.locator("#map-import button").click()
    a.wait_for_selector(".flash.ok")
    version = int(re.search(r"(\d+)", a.locator(".flash.ok").inner_text()).group(1))
    admin.check("imported")
    a.locator(f"tr[data-version='{version}'] button.activate").click()
    a.wait_for_selector(".flash.ok")
    assert a.locator(f"tr[data-version='{version}'] .badge").count() == 1, "the new version is current"
    admin.check("activated")
    for path in ("/admin", "/admin/departments", "/admin/roster", "/admin/calendar"):
        a.goto(path)
        admin.check(path.strip("/").replace("/", "-"))
    admin.close()


def test_admin_defines_a_calendar_year_sees_each_defect_named_fixes_them_and_sees_the_month_grid(stack, browser):
    """2031: far enough ahead that no clock of the other flows runs on it."""
    admin = Checked(browser, stack["console"], "admin-calendar")
    sign_in(admin, "admin")
    a = admin.page
    a.goto("/admin/calendar")
    assert a.locator("tr[data-year='2026']").count() == 1, "the shipped year is listed"
    admin.check("calendar-years")
    a.locator("#define-year-input").fill("2031")
    a.locator("#define-year button").click()
    a.wait_for_url("**/admin/calendar/2031/edit")
    admin.check("calendar-edit")
    # the national day week off, with a Saturday in it also given as a make-up day, and an afternoon
    # that ends before it starts: two defects intake names
    a.locator("#holiday-0-first").fill("2031-10-01")
    a.locator("#holiday-0-last").fill("2031-10-07")
    a.locator("#makeup-0-first").fill("2031-10-04")
    a.locator("#makeup-0-last").fill("")
    a.locator("#period-1-start").fill("13:30")
    a.locator("#period-1-end").fill("12:30")
    a.locator("#source").fill("browser test")
    a.locator("#save-calendar").click()
    a.wait_for_selector("#form-errors")
    assert "时段 13:30-12:30 的结束时间不晚于开始时间" in a.locator("#period-1-error").inner_text()
    assert "2031-10-04 既是法定节假日又是调休上班日" in a.locator("#makeup-error").inner_text()
    assert a.locator("#period-1-end").get_attribute("aria-invalid") == "true"
    assert a.locator("#form-errors li").count() == 2 and a.locator("#holiday-0-last").input_value() == "2031-10-07"
    admin.check("calendar-defects")
    # by keyboard: the summary has the focus, its first link leads to the field
    assert a.evaluate("document.activeElement.id") == "form-errors"
    a.keyboard.press("Tab")
    assert a.evaluate("document.activeElement.getAttribute('href')") == "#period-1-start"
    a.keyboard.press("Enter")
    assert a.evaluate("document.activeElement.id") == "period-1-start"
    a.locator("#period-1-end").fill("18:00")
    a.locator("#makeup-0-first").fill("2031-09-28")  # the Sunday before
    a.locator("#save-calendar").click()
    a.wait_for_url("**/admin/calendar/2031")
    a.wait_for_selector(".flash.ok")
    assert a.locator("table.month").count() == 12
    assert a.locator("td[data-date='2031-10-01']").get_attribute("data-kind") == "holiday"
    assert a.locator("td[data-date='2031-10-01'] .mark").inner_text() == "休"
    assert a.locator("td[data-date='2031-09-28']").get_attribute("data-kind") == "makeup"
    assert a.locator("td[data-date='2031-09-28'] .mark").inner_text() == "班"
    assert a.locator("td[data-date='2031-10-08']").get_attribute("data-kind") == "work"
    assert a.locator("[data-periods]").inner_text() == "09:00–12:00，13:30–18:00"
    assert a.locator("[data-timezone]").inner_text() == "Asia/Shanghai (UTC+08:00)"
    admin.check("calendar-month-grid")
    a.locator("form[action='/lang'] button").click()  # the same year in English
    a.wait_for_load_state()
    assert a.locator("#month-10 caption").inner_text() == "October"
    assert a.locator("td[data-date='2031-09-28'] .mark").inner_text() == "Work"
    admin.check("calendar-month-grid-en")
    admin.close()


def test_admin_edits_a_services_attributes_and_residents_are_asked_them(stack, browser):
    code = f"parties_{random.randint(1000, 9999)}"  # a rerun on the same stack adds one more
    admin = Checked(browser, stack["console"], "admin-attributes")
    sign_in(admin, "admin")
    a = admin.page
    a.goto("/admin/catalogue?edit=neighbour_dispute")
    new = f"#attr-{a.locator('fieldset.attribute').count() - 1}"
    a.locator(f"{new}-code").fill(code)
    a.locator(f"{new}-datatype").select_option("singlevaluelist")
    a.locator(f"{new}-description_zh").fill("涉及几户？")
    a.locator("#save-service").click()  # no English question: intake names that field
    a.wait_for_selector("#form-errors")
    assert a.locator(f"{new}-description_en-error").inner_text() == "不能为空。"
    assert a.locator(f"{new}-code").input_value() == code, "the form comes back as typed"
    assert a.locator(f"{new}-description_zh").input_value() == "涉及几户？"
    admin.check("attribute-refused-english-missing")
    a.locator(f"{new}-description_en").fill("How many households?")
    a.locator("#save-service").click()  # a choice without answer values: intake names the attribute
    a.wait_for_selector("#form-errors")
    assert "需要填写取值" in a.locator(f"{new}-error").inner_text()
    admin.check("attribute-refused")
    a.locator(f"{new}-values").fill("two = 两户 | Two households\nmany = 三户及以上 | Three or more")
    a.locator(f"{new}-required").check()
    a.locator("#save-service").click()
    a.wait_for_selector(".flash.ok")
    admin.check("attribute-saved")
    saved = httpx.get(f"{stack['intake']}/api/v1/services/neighbour_dispute", timeout=10).json()
    attribute = next(x for x in saved["attributes"] if x["code"] == code)
    assert attribute["required"] and attribute["datatype"] == "singlevaluelist"
    assert attribute["values"] == [{"key": "two", "name_zh": "两户", "name_en": "Two households"},
                                   {"key": "many", "name_zh": "三户及以上", "name_en": "Three or more"}]
    assert (attribute["description_zh"], attribute["description_en"]) == ("涉及几户？", "How many households?")
    row = a.locator(f"fieldset.attribute[data-attribute='{code}']")
    assert "two = 两户 | Two households" in row.locator("textarea").input_value(), "the editor shows what intake holds"
    admin.close()

    resident = Checked(browser, stack["console"], "resident-attributes", mobile=True)
    p = resident.page
    p.goto("/report/neighbour_dispute")
    assert p.locator(f"label[for=attr_{code}]").inner_text().startswith("涉及几户？")
    assert p.locator(f"#attr_{code} option[value=many]").inner_text() == "三户及以上"
    resident.check("asked-the-new-question")
    p.locator("form[action='/lang'] button").click()  # the same question in English
    p.wait_for_load_state()
    assert p.locator(f"label[for=attr_{code}]").inner_text().startswith("How many households?")
    assert p.locator(f"#attr_{code} option[value=many]").inner_text() == "Three or more"
    resident.check("asked-the-new-question-en")
    resident.close()


def test_two_administrators_edit_one_service_the_second_sees_the_current_version_and_keeps_what_they_typed(
        stack, browser):
    service = "disability_assistance"
    admin = Checked(browser, stack["console"], "admin-conflict")
    sign_in(admin, "admin")
    a = admin.page
    a.goto(f"/admin/catalogue?edit={service}")
    loaded = int(a.locator("input[name=revision]").input_value())
    typed_en = f"Help for residents with disabilities {random.randint(100, 999)}"
    a.locator("#name_en").fill(typed_en)
    # meanwhile a second administrator saves the same service through the API, on the same revision
    r = httpx.get(f"{stack['intake']}/api/v1/services/{service}", timeout=10)
    assert r.headers["etag"] == f'"{loaded}"'
    theirs = {k: v for k, v in r.json().items() if k not in ("code", "active", "revision", "changed_at")}
    theirs["name_zh"] = f"助残上门服务 {random.randint(100, 999)}"
    r = httpx.put(f"{stack['intake']}/api/v1/services/{service}", json=theirs, timeout=10,
                  headers={**bearer("admin", sub="admin-2"), "If-Match": r.headers["etag"]})
    assert r.status_code == 200, r.text
    a.locator("#save-service").click()
    a.wait_for_selector("#form-errors")
    assert "已被他人修改" in a.locator("#form-errors").inner_text()
    assert f"第 {loaded + 1} 版" in a.locator("#form-errors").inner_text()
    assert a.evaluate("document.activeElement.id") == "form-errors", "the message is announced"
    assert a.locator("#name_en").input_value() == typed_en, "what the administrator typed is kept"
    assert a.locator("#name_zh-error").inner_text() == f"当前版本：{theirs['name_zh']}"
    assert a.locator("input[name=revision]").input_value() == str(loaded + 1)
    admin.check("someone-else-saved-first")
    a.locator("#name_zh").fill(theirs["name_zh"])  # keep the other administrator's change too
    a.locator("#save-service").click()
    a.wait_for_selector(".flash.ok")
    held = httpx.get(f"{stack['intake']}/api/v1/services/{service}", timeout=10).json()
    assert (held["name_zh"], held["name_en"], held["revision"]) == (theirs["name_zh"], typed_en, loaded + 2)
    admin.check("saved-on-the-current-version")
    admin.close()


def held_by(stack, rid: str, *, known: bool = True) -> dict:
    """Grid's record of the request; with ``known=False`` an empty one while grid has not yet
    received it (the report reaches grid through the bus, after intake answered)."""
    r = httpx.get(f"{stack['grid']}/v1/requests/{rid}", headers=bearer("supervisor"), timeout=10)
    if r.status_code == 404 and not known:
        return {}
    assert r.status_code == 200, r.text
    return r.json()


def test_supervisor_reassigns_a_request_to_the_other_worker(stack, browser):
    g, rid = a_new_report(stack)
    assignee = until(lambda: held_by(stack, rid, known=False).get("assignee_id"), what="the request assigned")
    other = f"s{g['grid']}-2" if assignee != f"s{g['grid']}-2" else f"s{g['grid']}-1"
    supervisor = Checked(browser, stack["console"], "supervisor-reassign")
    sign_in(supervisor, f"c{g['grid'][:12]}")
    s = supervisor.page
    s.goto(f"/work/{rid}")
    s.locator("summary", has_text="改派").click()
    s.locator("#to_staff").fill(other)
    s.locator("#reassign_reason").fill("原承办人休假 the holder is on leave")
    s.locator("form[action$='/reassign'] button").click()
    s.wait_for_selector(".flash.ok")
    supervisor.check("reassigned")
    after = held_by(stack, rid)
    assert after["assignee_id"] == other and after["holder"] == "supervisor", after
    s.goto(f"/work/{rid}")
    assert other in s.locator("dl.facts").inner_text()
    supervisor.check("reassigned-request")
    supervisor.close()


def test_worker_transfers_a_request_to_another_grid(stack, browser):
    g, rid = a_new_report(stack)
    grids = httpx.get(f"{stack['grid']}/v1/map/grids", params={"limit": 3}, timeout=10).json()["grids"]
    to_grid = next(x["grid"] for x in grids if x["grid"] != g["grid"])
    worker = Checked(browser, stack["console"], "worker-transfer", mobile=True)
    sign_in(worker, f"s{g['grid']}-1")
    w = worker.page

    def assigned_here():
        w.goto(f"/work/{rid}")
        return w.locator("#accept").count() == 1

    until(assigned_here, what="the request on the worker's page")
    w.locator("summary", has_text="转办").click()
    w.locator("#to_grid").fill("999999999999999")  # no such grid: grid says so, nothing moves
    w.locator("#transfer_reason").fill("不在本网格 not in this grid")
    w.locator("form[action$='/transfer'] button").click()
    w.wait_for_selector(".flash.error")
    assert "to_grid" in w.locator(".flash.error").inner_text()
    worker.check("transfer-refused")
    assert held_by(stack, rid)["grid"] == g["grid"]
    w.goto(f"/work/{rid}")
    w.locator("summary", has_text="转办").click()
    w.locator("#to_grid").fill(to_grid)
    w.locator("#transfer_reason").fill("楼栋属于相邻网格 the building belongs to the next grid")
    w.locator("form[action$='/transfer'] button").click()
    w.wait_for_selector(".flash.ok")
    worker.check("transferred")
    moved = held_by(stack, rid)
    assert moved["grid"] == to_grid and moved["transfers"][-1]["reason"].startswith("楼栋属于相邻网格")
    worker.close()


def test_worker_rejects_a_request_with_a_reason_the_resident_reads(stack, browser):
    g, rid = a_new_report(stack)
    reason = "不属于本街道受理范围 not for the street office"
    worker = Checked(browser, stack["console"], "worker-reject", mobile=True)
    sign_in(worker, f"s{g['grid']}-1")
    w = worker.page

    def assigned_here():
        w.goto(f"/work/{rid}")
        return w.locator("#accept").count() == 1

    until(assigned_here, what="the request on the worker's page")
    w.locator("summary", has_text="不予受理").click()
    w.locator("#reject_reason").fill(reason)
    w.locator("form[action$='/reject'] button").click()
    w.wait_for_selector(".flash.ok")
    worker.check("rejected")
    assert held_by(stack, rid)["status"] == "rejected"
    worker.close()

    # what the resident reads on their tracking page, once intake has the rejection
    resident = Checked(browser, stack["console"], "resident-rejected", mobile=True)
    p = resident.page
    token = shared[f"token:{rid}"]

    def resident_reads_it():
        p.goto(f"/track/{rid}?token={token}")
        return p.locator("[data-status]").first.get_attribute("data-status") == "rejected"

    until(resident_reads_it, what="the rejection on the resident's page")
    assert reason in p.locator("ol.history").inner_text()
    resident.check("rejected-with-reason")
    resident.close()


def test_volunteer_declines_an_offer_saying_why(stack, browser):
    g = first_grid(stack, any_of=4)
    tomorrow_10 = (datetime.now(TZ) + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    created = submit_by_api(stack, g, service="elderly_home_care", preferred_time=tomorrow_10.isoformat(),
                            attributes={"care_type": ["shopping"], "resident_age": 79})
    rid = created["request_id"]

    def offered():
        m = httpx.get(f"{stack['matching']}/matches/{rid}", headers=bearer("supervisor"), timeout=10)
        offers = [o for o in m.json().get("offers", []) if o["status"] == "open"] if m.status_code == 200 else []
        return offers[0] if offers else None

    offer = until(offered, what="matching's offers")
    volunteer = Checked(browser, stack["console"], "volunteer-decline", mobile=True)
    sign_in_as(volunteer, "volunteer", offer["volunteer_id"])
    v = volunteer.page

    def offer_shown():
        v.goto("/volunteer")
        return v.locator(f"[data-request='{rid}']").count() == 1

    until(offer_shown, what="the offer on the volunteer's page")
    card = v.locator(f"[data-request='{rid}']")
    card.locator("summary", has_text="婉拒").click()
    card.locator("textarea[name=reason]").fill("明天上午要去医院 at the hospital tomorrow morning")
    volunteer.check("declining")
    card.locator(".decline-offer").click()
    v.wait_for_selector(".flash.ok")
    assert v.locator(f"[data-request='{rid}']").count() == 0, "the offer is gone"
    volunteer.check("declined")
    volunteer.close()
    m = httpx.get(f"{stack['matching']}/matches/{rid}", headers=bearer("supervisor"), timeout=10).json()
    assert next(o for o in m["offers"] if o["offer_id"] == offer["offer_id"])["status"] == "declined"

    def declined_with_reason():
        r = httpx.get(f"{stack['audit']}/requests/{rid}/timeline", headers=bearer("auditor"), timeout=10)
        entries = r.json().get("timeline", []) if r.status_code == 200 else []
        return [e for e in entries if e["type"].endswith("declined")]

    [entry] = until(declined_with_reason, what="the decline in the audit trail")
    assert entry["data"]["reason"] == "明天上午要去医院 at the hospital tomorrow morning"
