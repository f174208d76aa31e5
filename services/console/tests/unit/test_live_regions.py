"""Live regions (docs/adr/0303): each page that changes while it is open serves its list region at
/live<page> from the same handler, as the template's ``live`` block alone; the page polls it at
CONSOLE_LIVE_REFRESH_SECONDS; a poll whose session expired tells htmx to send the browser to the
sign-in page instead of pasting that page into a list; a poll leaves the session cookie alone.
The four services are stood in (httpx's mock transport)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from civicgrid_console.adapters.session_cookie import COOKIE_NAME
from civicgrid_console.entrypoints.http import build_app
from civicgrid_console.settings import ConsoleSettings

GRID = "110105001001001"
SOON = (datetime.now(timezone.utc) + timedelta(hours=3)).isoformat()
HX = {"HX-Request": "true"}


class Services:
    """What the pages read from the four services; ``queue`` may grow between two reads, and
    ``refuse`` makes every call answer with that status."""

    def __init__(self) -> None:
        self.queue = [{"request_id": "r-first", "status": "assigned", "service_code": "sanitation", "grid": GRID,
                       "due_response": SOON}]
        self.refuse: int | None = None
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.url.host} {request.url.path}")
        if self.refuse:
            return httpx.Response(self.refuse, json={"title": "refused"})
        answer = self.answer(request.url.host, request.url.path)
        return httpx.Response(404, json={"title": "Not found"}) if answer is None else httpx.Response(200, json=answer)

    def answer(self, host: str, path: str):
        rid = "r-first"
        return {
            ("grid.test", "/v1/queue"): self.queue,
            ("grid.test", f"/v1/requests/{rid}"): {
                "request_id": rid, "status": "dispatched", "service_code": "sanitation", "grid": GRID,
                "dispatches": {"d1": {"departments": ["chengguan"], "report_by": SOON}}},
            ("grid.test", "/v1/map/grids"): {"grids": [{"grid": GRID}]},
            ("intake.test", "/api/v1/requests"): {"items": [
                {"request_id": rid, "status": "assigned", "agency_responsible": GRID, "service_name": "Sanitation",
                 "received_at": SOON}], "next_cursor": None},
            ("intake.test", f"/api/v1/requests/{rid}"): {
                "request_id": rid, "status": "assigned", "service_name": "Sanitation", "received_at": SOON,
                "history": [{"at": SOON, "status": "received"}, {"at": SOON, "status": "assigned"}]},
            ("audit.test", "/supervision/overdue"): [{"request_id": "r-late", "clock": "response", "area_code": GRID,
                                                      "overdue_hours": 2.5, "level": "community"}],
            ("audit.test", "/supervision/escalated"): [],
            ("audit.test", "/kpis"): {"received": 7, "resolved": 3, "overdue": 1, "escalations": 0, "unsatisfied": 1,
                                      "response_rate": 0.5, "resolution_rate": 0.4, "satisfaction_rate": None,
                                      "response_on_time_rate": 1.0, "resolution_on_time_rate": 1.0,
                                      "reopen_rate": 0.0, "median_handling_hours": 1.5, "p90_handling_hours": 4.0},
            ("matching.test", "/me"): {"name": "Li", "community": GRID[:12], "skills": ["company"]},
            ("matching.test", "/me/offers"): [{"offer_id": "o1", "request_id": rid, "service_code": "elderly_home_care",
                                               "needed_from": SOON, "needed_hours": 2, "distance_m": 300,
                                               "why": "close by"}],
            ("matching.test", "/me/hours"): [],
        }.get((host, path))


@pytest.fixture
def services() -> Services:
    return Services()


def console(services: Services, **settings) -> TestClient:
    app = build_app(ConsoleSettings(intake_url="http://intake.test", grid_url="http://grid.test",
                                    matching_url="http://matching.test", audit_url="http://audit.test", **settings))
    for api in app.state.console.apis.all():
        api.client = httpx.AsyncClient(base_url=str(api.client.base_url), transport=httpx.MockTransport(services))
    return TestClient(app)


def sign_in(c: TestClient, role: str, sub: str, area: str = "") -> None:
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/").text).group(1)
    r = c.post("/signin", data={"csrf": token, "sub": sub, "role": role, "area": area, "label": sub},
               follow_redirects=False)
    assert r.status_code == 303


def region_of(page: str, region_id: str) -> str:
    """The content of a page's live region (up to the end of the page's main part)."""
    start = page.index(f'id="{region_id}"')
    return page[page.index(">", start) + 1:page.index("</main>")]


#: each live page: who opens it, its path, its region, and a text its list shows
LIVE_PAGES = [
    ("grid_worker", "s1", GRID, "/work", "queue-live", "r-first"),
    ("supervisor", "sup", GRID[:12], "/supervise", "supervise-live", "\"state\": \"overdue\""),
    ("supervisor", "sup", GRID[:12], f"/supervise/grid/{GRID}", "grid-live", "Sanitation"),
    ("supervisor", "sup", GRID[:12], "/supervise/kpis?dimension=community&key=110105001001", "kpis-live",
     'data-kpi="received">7'),
    ("department", "chengguan", "", "/dispatches", "dispatches-live", "/dispatches/r-first/d1/acknowledge"),
    ("volunteer", "v1", "", "/volunteer", "volunteer-live", "close by"),
    (None, "", "", "/track/r-first?token=t0k", "track-live", "data-status=\"assigned\""),
]


@pytest.mark.parametrize(("role", "sub", "area", "path", "region", "shows"), LIVE_PAGES,
                         ids=[p[3].split("?")[0] for p in LIVE_PAGES])
def test_a_live_page_polls_its_region_and_the_region_route_answers_it_alone(services, role, sub, area, path,
                                                                            region, shows):
    with console(services) as c:
        if role:
            sign_in(c, role, sub, area)
        page = c.get(path)
        assert page.status_code == 200, page.text
        assert f'hx-get="/live{path}"'.replace("&", "&amp;") in page.text
        assert 'hx-trigger="every 15s, live-refresh"' in page.text and 'hx-swap="innerHTML"' in page.text
        assert f'id="{region}-note" class="live-note" role="status" aria-live="polite"' in page.text
        assert shows in region_of(page.text, region)

        live = c.get(f"/live{path}", headers=HX)
        assert live.status_code == 200, live.text
        assert shows in live.text and 'class="live-updated' in live.text
        assert "<html" not in live.text and "<nav" not in live.text and "<h1" not in live.text, "the region alone"
        assert "hx-get" not in live.text, "the region's content, not the polling element again"
        assert "<script" not in live.text, "htmx strips every script element from an answer (allowScriptTags)"
        assert live.headers["content-security-policy"].startswith("default-src 'self'")


def test_forms_outside_a_region_stay_out_of_its_answer(services):
    with console(services) as c:
        sign_in(c, "grid_worker", "s1", GRID)
        page = c.get("/work").text
        assert page.index('id="queue-live"') > page.index("<h1"), "the region below the page's heading"
        live = c.get("/live/work", headers=HX).text
        assert "<form" not in live, "the queue's region holds no form (the worker's own post is above it)"


def test_the_region_shows_when_it_was_read_in_the_offices_time_zone(services):
    with console(services) as c:
        sign_in(c, "grid_worker", "s1", GRID)
        live = c.get("/live/work", headers=HX).text
        stamp = re.search(r'<time datetime="([^"]+)">(\d\d:\d\d:\d\d)</time>', live)
        assert stamp and stamp.group(1).endswith("+08:00"), live
        assert stamp.group(1)[11:19] == stamp.group(2)
        assert "更新于" in live and "每 15 秒自动刷新" in live


def test_a_request_submitted_meanwhile_appears_in_the_next_answer(services):
    with console(services) as c:
        sign_in(c, "grid_worker", "s1", GRID)
        assert "r-new" not in c.get("/live/work", headers=HX).text
        services.queue.append({"request_id": "r-new", "status": "assigned", "service_code": "other", "grid": GRID})
        live = c.get("/live/work", headers=HX).text
        assert 'data-request="r-new"' in live and "共 2 件" in live


def test_a_poll_leaves_the_session_cookie_and_the_next_pages_messages_alone(services):
    with console(services) as c:
        sign_in(c, "grid_worker", "s1", GRID)  # the sign-in left "signed in" for the next page
        live = c.get("/live/work", headers=HX)
        assert "set-cookie" not in live.headers, "an unchanged session is not written back"
        assert "flash" not in live.text
        assert "flash ok" in c.get("/work").text, "the message waits for the page"


def test_a_poll_without_a_session_sends_the_browser_to_sign_in_not_into_the_list(services):
    with console(services) as c:
        r = c.get("/live/supervise/kpis?dimension=grid", headers=HX, follow_redirects=False)
        assert r.status_code == 401 and r.text == ""
        assert r.headers["hx-redirect"] == "/signin?next=/supervise/kpis%3Fdimension%3Dgrid"
        r = c.get("/live/work", follow_redirects=False)  # not from htmx: the ordinary redirect
        assert r.status_code == 303 and r.headers["location"] == "/signin?next=/work"


def test_a_poll_whose_token_the_services_refuse_signs_out_and_sends_the_browser_to_sign_in(services):
    with console(services) as c:
        sign_in(c, "grid_worker", "s1", GRID)
        services.refuse = 401
        r = c.get("/live/work", headers=HX, follow_redirects=False)
        assert r.status_code == 401 and r.headers["hx-redirect"] == "/signin?next=/work"
        assert COOKIE_NAME in r.headers["set-cookie"], "the signed-out session is written"
        services.refuse = None
        assert c.get("/work", follow_redirects=False).status_code == 303, "signed out"


def test_a_failed_poll_answers_an_error_htmx_does_not_swap_in_not_a_page(services):
    with console(services) as c:
        sign_in(c, "grid_worker", "s1", GRID)
        services.refuse = 503
        r = c.get("/live/work", headers=HX)
        assert r.status_code == 503
        assert "<html" not in r.text and 'role="alert"' in r.text and "服务暂不可用" in r.text


def test_the_interval_is_a_setting_and_zero_turns_polling_off(services, monkeypatch):
    assert ConsoleSettings().live_refresh_seconds == 15
    for bad in ("-1", "3601", "soon"):
        monkeypatch.setenv("CONSOLE_LIVE_REFRESH_SECONDS", bad)
        with pytest.raises(ValidationError, match="live_refresh_seconds"):
            ConsoleSettings()
    monkeypatch.setenv("CONSOLE_LIVE_REFRESH_SECONDS", "0")
    with console(services) as c:
        sign_in(c, "grid_worker", "s1", GRID)
        page = c.get("/work").text
        assert "hx-trigger" not in page and 'id="queue-live"' in page and "r-first" in page
        assert "自动刷新" not in page, "no promise of refreshing"
    monkeypatch.setenv("CONSOLE_LIVE_REFRESH_SECONDS", "3")
    with console(services) as c:
        sign_in(c, "grid_worker", "s1", GRID)
        assert 'hx-trigger="every 3s, live-refresh"' in c.get("/work").text


def test_only_the_live_pages_have_a_live_route(services):
    with console(services) as c:
        sign_in(c, "admin", "admin")
        assert c.get("/live/admin/roster", headers=HX).status_code == 404
        assert c.get("/live/work/r-first", headers=HX).status_code == 404
