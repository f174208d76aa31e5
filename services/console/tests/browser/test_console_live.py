"""Live updates in a real headless Chromium against the real stack (docs/adr/0303): a grid worker's
open queue renews its "updated at" in place while nothing changes (no list rebuilt, nothing
announced), gains a request a resident just reported without a reload and says so in its polite
note; it is not asked for while the worker uses it or while the tab is hidden; when the session is
gone, the next update sends the browser to the sign-in page instead of pasting it into the list.
A supervisor's open dashboard and KPIs follow a new request: counts, the map's colours (the map
kept), the KPI figures and charts drawn again.
A console of the test's own refreshes every 2 s; every page is screenshot and checked by axe-core
(no serious or critical violation) and for CSP violations."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.console import Checked, ConsoleProcess, report_at_a_building, sign_in_as
from tests.support.platform import SERVICES, free_port

pytestmark = [pytest.mark.infra]
REFRESH_SECONDS = 2
UPDATED_AT = "#queue-live .live-updated time"
SUMMARY = "document.querySelector('#queue-live [data-live-summary]')"
CLEAR = "#2e7d32"  # console.js's fill of a grid with nothing open

#: whether the next live update of ``region`` is asked for: htmx's own event, as console.js left it
NEXT_UPDATE_ASKED = """region => new Promise(resolve => {
  document.addEventListener("htmx:beforeRequest", e => resolve(!e.defaultPrevented), {once: true});
  htmx.trigger(document.getElementById(region), "live-refresh");
})"""


@pytest.fixture(scope="module")
def live_console(stack, tmp_path_factory):
    """A console in front of the stack's services that refreshes its live regions every 2 s."""
    port = free_port()
    console = ConsoleProcess({svc: stack[svc] for svc in SERVICES},
                             tmp_path_factory.mktemp("live-console") / "console.log", port=port,
                             extra_env={"CONSOLE_LIVE_REFRESH_SECONDS": str(REFRESH_SECONDS),
                                        "CONSOLE_PUBLIC_URL": f"http://127.0.0.1:{port}"})
    try:
        console.wait_ready()
        yield console.url
    finally:
        console.stop()


def test_an_open_queue_gains_a_new_request_without_a_reload(stack, browser, live_console):
    g = httpx.get(f"{stack['grid']}/v1/map/grids", params={"limit": 1}, timeout=10).json()["grids"][0]["grid"]
    worker = Checked(browser, live_console, "live-worker", mobile=True)
    sign_in_as(worker, "grid_worker", f"s{g}-1", g)  # post A of the first grid: its new requests are theirs
    p = worker.page
    p.goto("/work")
    region = p.locator("#queue-live")
    assert region.get_attribute("hx-trigger") == f"every {REFRESH_SECONDS}s, live-refresh"
    assert p.locator("#queue-live-note").get_attribute("aria-live") == "polite"
    worker.check("queue-before")
    p.evaluate("() => { window.notReloaded = true; }")  # gone if the page were loaded again
    p.evaluate(f"() => {{ {SUMMARY}.mark = 'as shown first'; }}")  # gone if the list were rebuilt

    # an answer with nothing new renews "updated at" in place: no rebuilt list, nothing announced
    read_at = p.locator(UPDATED_AT).get_attribute("datetime")
    p.wait_for_function("([sel, was]) => document.querySelector(sel).dateTime !== was", arg=[UPDATED_AT, read_at],
                        timeout=60_000)
    assert p.evaluate(f"() => {SUMMARY}.mark") == "as shown first"
    assert p.locator("#queue-live-note").inner_text() == ""

    rid = report_at_a_building(stack, g, description="路灯不亮了 live browser test", facility="streetlight")
    p.wait_for_selector(f"#queue-live li[data-request='{rid}']", timeout=120_000)
    assert p.evaluate("() => window.notReloaded === true"), "the queue changed in place"
    assert p.evaluate(f"() => {SUMMARY}.mark") is None, "the list was drawn anew"
    assert p.locator("#queue-live-note").inner_text().startswith("工单有变化"), "the change is announced"
    assert p.evaluate("() => document.activeElement === document.body"), "focus stayed where it was"
    assert p.locator(UPDATED_AT).inner_text().count(":") == 2, "updated at HH:MM:SS"
    worker.check("queue-after")

    # the person comes first: no update while they use the region or while the tab is hidden
    p.locator(f"#queue-live li[data-request='{rid}'] a").focus()
    assert not p.evaluate(NEXT_UPDATE_ASKED, "queue-live"), "focus in the queue holds it"
    p.evaluate("() => document.activeElement.blur()")
    p.evaluate("() => Object.defineProperty(document, 'hidden', {value: true, configurable: true})")
    assert not p.evaluate(NEXT_UPDATE_ASKED, "queue-live"), "a hidden tab asks for nothing"
    p.evaluate("() => { delete document.hidden; }")
    assert p.evaluate(NEXT_UPDATE_ASKED, "queue-live"), "back in view, it is asked again"
    p.wait_for_load_state("networkidle")

    # the session is gone (its cookie expired): the next update takes the whole page to sign-in
    worker.context.clear_cookies()
    p.wait_for_url(re.compile(r"/signin\?next=/work$"), timeout=60_000)
    p.wait_for_load_state()
    assert p.locator("#queue-live").count() == 0 and p.locator(".flash.error").count() == 1
    worker.check("signed-out")
    worker.close()


def test_a_supervisors_open_dashboard_and_kpis_follow_a_new_request(stack, browser, live_console):
    grids = httpx.get(f"{stack['grid']}/v1/map/grids", params={"limit": 20}, timeout=10).json()["grids"]
    district = grids[0]["grid"][:6]
    dashboard = Checked(browser, live_console, "live-supervisor")
    kpis = Checked(browser, live_console, "live-kpis")
    errors: list[str] = []
    for c in (dashboard, kpis):
        c.page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in_as(dashboard, "supervisor", "live-district", district)
    sign_in_as(kpis, "supervisor", "live-district", district)
    d, k = dashboard.page, kpis.page
    d.goto("/supervise")
    d.wait_for_selector("#area-map .leaflet-interactive")
    k.goto("/supervise/kpis?dimension=district&key=" + district)
    k.wait_for_selector(".chart canvas")
    state = d.evaluate("() => JSON.parse(document.getElementById('grid-state').dataset.json)")
    clear = next(g["grid"] for g in grids if state.get(g["grid"], {}).get("state") == "clear")
    open_before = int(d.locator("p.totals").get_attribute("data-open"))
    received_before = int(k.locator("[data-kpi=received]").inner_text())
    clear_paths = f"#area-map path.leaflet-interactive[fill='{CLEAR}']"
    clear_before = d.locator(clear_paths).count()
    dashboard.check("dashboard-before")
    kpis.check("kpis-before")
    for p in (d, k):
        p.evaluate("() => { window.notReloaded = true; }")

    report_at_a_building(stack, clear, description="路灯不亮了 live browser test", facility="streetlight")
    d.wait_for_function("n => Number(document.querySelector('p.totals').dataset.open) > n", arg=open_before,
                        timeout=120_000)
    d.wait_for_function("([sel, n]) => document.querySelectorAll(sel).length < n", arg=[clear_paths, clear_before],
                        timeout=120_000)  # its grid is no longer drawn as clear: the map kept, recoloured
    k.wait_for_function("n => Number(document.querySelector('[data-kpi=received]').textContent) > n",
                        arg=received_before, timeout=120_000)
    k.wait_for_selector(".chart canvas")  # the charts drawn again from the new series
    assert d.evaluate("() => window.notReloaded") and k.evaluate("() => window.notReloaded")
    assert d.locator("#supervise-live-note").inner_text().startswith("督办数据有变化")
    assert k.locator("#kpis-live-note").inner_text() == "考核指标有变化。"
    assert k.locator(".chart canvas").count() == 2
    assert not errors, errors
    dashboard.check("dashboard-after")
    kpis.check("kpis-after")
    dashboard.close()
    kpis.close()
