"""Staff sign in through the real identity provider (Dex) in a real headless Chromium: the console
sends the browser to Dex's own login form, the demo grid worker types their login and password
there, Dex sends them back with a code, the console trades it (PKCE) and shows their queue -- with
a request of their grid in it, read from grid with the provider's access token. Then they sign out.
An answer whose state was altered on the way back, and an ID token without a nonce (the nonce
taken out of the request to Dex), are refused, and nobody is signed in by them. A console that
renews the access token on every page (its refresh margin is the token's whole life) keeps the
person signed in with a new token from Dex's refresh grant each time.
"""

from __future__ import annotations

import random
import re
import sys
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from civicgrid_console.adapters.session_cookie import COOKIE_NAME, SessionCodec
from civicgrid_console.settings import DEVELOPMENT_SESSION_SECRET
from tests.support.console import SHOTS, Checked, ConsoleProcess, until
from tests.support.platform import ROOT, SERVICES

sys.path.insert(0, str(ROOT / "deploy" / "local"))
import identity  # noqa: E402 - deploy/local is not a package

pytestmark = [pytest.mark.infra]
WORKER = f"s{identity.DEMO_GRID}-1"  # post A of the demo city's first grid, a Dex user of the demo staff


def report_in_the_workers_grid(stack) -> str:
    """A request of its own inside the worker's grid (a point next to an earlier report would be
    merged into it and never assigned, so another point is tried). Of the service "other" (handled by
    the grid, no questions), which no other browser test reports or edits: their reports are never
    merged into it, nor it into theirs."""
    grids = httpx.get(f"{stack['grid']}/v1/map/grids", params={"limit": 1}, timeout=10).json()["grids"]
    assert grids[0]["grid"] == identity.DEMO_GRID, "the provider's demo staff belong to the demo city's first grid"
    min_lon, min_lat, max_lon, max_lat = grids[0]["bbox"]
    for _ in range(10):
        fx, fy = random.uniform(0.25, 0.75), random.uniform(0.25, 0.75)
        body = {"service_code": "other", "channel": "app", "attributes": {},
                "location": {"lat": min_lat + fy * (max_lat - min_lat), "lon": min_lon + fx * (max_lon - min_lon)},
                "description": "The stairwell door no longer closes (OIDC browser test)"}
        r = httpx.post(f"{stack['intake']}/api/v1/requests", json=body, timeout=10)
        assert r.status_code == 201, r.text
        if r.json()["status"] != "merged":
            return r.json()["request_id"]
    raise AssertionError("every point tried was merged into an earlier report")


def screenshot(c: Checked, label: str) -> None:
    """The provider's own pages: a screenshot, but no axe check (they are Dex's, not ours)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    c.shots += 1
    c.page.screenshot(path=str(SHOTS / f"{c.name}-{c.shots:02d}-{label}.png"), full_page=True)


def log_in_at_the_provider(c: Checked, issuer: str, staff_id: str) -> None:
    """On Dex's login form (reached by following the console's redirect), as the person would."""
    p = c.page
    p.wait_for_url(re.compile(re.escape(issuer) + r"/auth/.*"))
    p.wait_for_selector("input[name=password]")
    screenshot(c, "provider-login")
    p.fill("input[name=login]", identity.email(staff_id))
    p.fill("input[name=password]", identity.DEMO_PASSWORD)
    p.locator("button[type=submit]").click()


def test_a_grid_worker_signs_in_at_the_provider_reaches_their_queue_and_signs_out(stack, browser):
    rid = report_in_the_workers_grid(stack)
    worker = Checked(browser, stack["console"], "oidc-worker", mobile=True)
    p = worker.page
    p.goto("/work")
    assert "/signin?next=/work" in p.url
    worker.check("signin")
    p.locator("#oidc-signin").click()
    log_in_at_the_provider(worker, stack["issuer"], WORKER)
    p.wait_for_url(f"{stack['console']}/work")
    assert WORKER in p.locator("header .me").inner_text()
    assert p.locator(".flash.ok").count() == 1

    def in_queue():
        p.goto("/work")
        return p.locator(f"li[data-request='{rid}']").count() == 1

    until(in_queue, what="the request in the worker's queue (read from grid with the provider's token)")
    worker.check("queue")
    p.locator("form[action='/signout'] button").click()
    p.wait_for_url(f"{stack['console']}/")
    assert p.locator("header .me").count() == 0 and p.locator(".flash.ok").count() == 1
    worker.check("signed-out")
    p.goto("/work")
    assert "/signin?next=/work" in p.url, "signed out: the queue asks for sign-in again"
    worker.close()


def rewrite_redirect(change, seen: list[str]):
    """A route handler that lets the request through and alters where its redirect points
    (Playwright does not route the redirected requests themselves)."""

    def handler(route):
        response = route.fetch(max_redirects=0)
        location = response.headers["location"]
        seen.append(location)
        route.fulfill(response=response, headers={**response.headers, "location": change(location)})

    return handler


def with_query(url: str, change) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    change(query)
    return parts._replace(query=urlencode(query)).geturl()


def refused_and_nobody_signed_in(c: Checked, stack, message: str) -> None:
    p = c.page
    p.wait_for_selector("p.flash.error")
    assert p.url.startswith(f"{stack['console']}/auth/callback")
    assert message in p.locator("p.flash.error").inner_text()
    c.check("refused")
    p.unroute_all()
    p.goto("/work")
    assert "/signin?next=/work" in p.url, "nobody was signed in"


def test_an_answer_with_an_altered_state_is_refused(stack, browser):
    c = Checked(browser, stack["console"], "oidc-tampered-state")
    seen: list[str] = []

    def alter_state(query):
        query["state"] = query["state"][:-4] + ("AAAA" if not query["state"].endswith("AAAA") else "BBBB")

    # Dex's answer to the login form is the redirect back to the console: its state is altered on the way
    c.page.route(f"{stack['issuer']}/auth/local/login**",
                 rewrite_redirect(lambda url: with_query(url, alter_state), seen))
    c.page.goto("/signin")
    c.page.locator("#oidc-signin").click()
    log_in_at_the_provider(c, stack["issuer"], WORKER)
    refused_and_nobody_signed_in(c, stack, "不一致")
    assert seen and seen[0].startswith(f"{stack['console']}/auth/callback?"), seen
    c.close()


def test_an_id_token_without_the_nonce_is_refused(stack, browser):
    c = Checked(browser, stack["console"], "oidc-no-nonce")
    seen: list[str] = []
    # the console's redirect to Dex loses its nonce: Dex then issues an ID token without one
    c.page.route(f"{stack['console']}/auth/login**",
                 rewrite_redirect(lambda url: with_query(url, lambda q: q.pop("nonce")), seen))
    c.page.goto("/signin")
    c.page.locator("#oidc-signin").click()
    log_in_at_the_provider(c, stack["issuer"], WORKER)
    refused_and_nobody_signed_in(c, stack, "nonce")
    assert seen and "nonce=" in seen[0], seen
    c.close()


@pytest.fixture(scope="module")
def refreshing_console(stack, tmp_path_factory):
    """A second console in front of the stack whose every page renews the access token: the
    refresh margin is the whole life of Dex's tokens (an hour)."""
    port = stack.get("spare_console_port")
    assert port, "the stack names no spare console port (CIVICGRID_CONSOLE_STACK: add 'spare_console_port <port>')"
    url = f"http://127.0.0.1:{port}"
    oidc = {k: v for k, v in identity.settings_env(urlsplit(stack["issuer"]).port).items()
            if k.startswith("CIVICGRID_OIDC_")}
    console = ConsoleProcess({svc: stack[svc] for svc in SERVICES}, tmp_path_factory.mktemp("console") / "console.log",
                             port=int(port), extra_env={**oidc, **identity.console_env(url),
                                                        "CONSOLE_TOKEN_REFRESH_MARGIN_SECONDS": "3600"})
    try:
        console.wait_ready()
        yield console.url
    finally:
        console.stop()


def test_the_access_token_is_renewed_with_the_providers_refresh_grant(stack, refreshing_console, browser):
    c = Checked(browser, refreshing_console, "oidc-refresh", mobile=True)
    p = c.page
    p.goto("/signin?next=/work")
    p.locator("#oidc-signin").click()
    log_in_at_the_provider(c, stack["issuer"], WORKER)
    p.wait_for_url(f"{refreshing_console}/work")
    codec = SessionCodec(DEVELOPMENT_SESSION_SECRET, max_age_seconds=3600)  # the test consoles' development key
    seen = []
    for _ in range(3):
        p.goto("/work")
        assert p.locator("p.flash.error").count() == 0 and p.locator("main h1").count() == 1
        session = codec.open(next(k["value"] for k in c.context.cookies() if k["name"] == COOKIE_NAME))
        assert session["sub"] == WORKER and session["method"] == "oidc"
        seen.append((session["token"], session["refresh_token"]))
    c.check("queue-after-refreshes")
    assert len({token for token, _ in seen}) == 3, "a new access token on every page"
    assert len({refresh for _, refresh in seen}) == 3, "Dex rotates the refresh token with each use"
    c.close()
