"""The roster in a real headless Chromium against the real stack: the administrator swaps a post's
B (a refused choice first, marked on its field), sets A away, and the request assigned next goes to
the new B, who sees that they cover for A; A sees it too and comes back. Every page is screenshot
and checked by axe-core (no serious or critical violation)."""

from __future__ import annotations

import httpx
import pytest

from civicgrid_runtime.auth import mint_token
from civicgrid_runtime.settings import DEV_AUTH_SECRET
from tests.support.console import Checked, report_at_a_building, sign_in_as, until

pytestmark = [pytest.mark.infra]


def test_administrator_swaps_b_sets_a_away_and_the_next_request_goes_to_the_new_b(stack, browser):
    grids = httpx.get(f"{stack['grid']}/v1/map/grids", params={"limit": 2}, timeout=10).json()["grids"]
    g, neighbour = grids[0]["grid"], grids[1]["grid"]
    assert g[:12] == neighbour[:12], "the first two grids share a community"
    a_id, old_b, new_b = f"s{g}-1", f"s{g}-2", f"s{neighbour}-1"
    post_id = f"p{g}-general"

    admin = Checked(browser, stack["console"], "roster-admin")
    p = admin.page
    sign_in_as(admin, "admin", "admin", "")
    p.goto("/admin/roster")
    admin.check("pickers")
    p.locator("#pick-street").select_option(g[:9])
    p.locator("#pick").click()
    p.wait_for_load_state()
    p.locator("#pick-community").select_option(g[:12])
    p.locator("#pick").click()
    p.wait_for_load_state()
    card = p.locator(f"li[data-post='{post_id}']")
    assert card.locator("[data-holder=A] [data-person]").get_attribute("data-person") == a_id
    assert card.locator("[data-holder=B] [data-person]").get_attribute("data-person") == old_b
    assert card.get_attribute("data-serving") == "A"
    admin.check("community-posts")

    # a refused B comes back marked on its field, in the page's language
    form = f"#post-{post_id}"
    card.locator("summary").click()
    p.locator(f"{form}-b").fill(a_id)
    p.locator(f"{form} button[type=submit]").click()
    p.wait_for_load_state()
    assert p.locator(f"{form}-b").get_attribute("aria-invalid") == "true"
    assert "不能与A岗是同一人" in p.locator(f"#post-{post_id}-b-err").inner_text()
    admin.check("refused-b")

    p.locator(f"{form}-b").fill(new_b)
    p.locator(f"{form}-reason").fill("本周人手不足")
    p.locator(f"{form} button[type=submit]").click()
    p.wait_for_selector(".flash.ok")
    card = p.locator(f"li[data-post='{post_id}']")
    assert card.locator("[data-holder=B] [data-person]").get_attribute("data-person") == new_b
    admin.check("b-swapped")

    # A away, until they say they are back
    person = p.locator(f"li[data-staff='{a_id}']")
    person.locator("details summary").first.click()
    p.locator(f"#duty-{a_id}-duty").select_option("off")
    p.locator(f"#duty-{a_id}-reason").fill("外出培训")
    p.locator(f"#duty-{a_id} button[type=submit]").click()
    p.wait_for_selector(".flash.ok")
    card = p.locator(f"li[data-post='{post_id}']")
    assert card.get_attribute("data-serving") == "B", card.inner_text()
    assert card.locator("[data-holder=A] [data-duty]").get_attribute("data-duty") == "off"
    admin.check("a-away-b-covers")

    # the next request of that grid goes to the new B
    rid = report_at_a_building(stack, g, description="楼道的长椅坏了 roster browser test", facility="bench")
    admin_api = {"Authorization": f"Bearer {mint_token(secret=DEV_AUTH_SECRET, sub='roster-test', role='admin')}"}

    def assigned():
        r = httpx.get(f"{stack['grid']}/v1/requests/{rid}", headers=admin_api, timeout=10)
        return r.json() if r.status_code == 200 and r.json().get("assignee_id") else None

    work = until(assigned, what="grid to assign the request")
    assert (work["assignee_id"], work["holder"], work["post_id"]) == (new_b, "B", post_id), work

    b = Checked(browser, stack["console"], "roster-new-b", mobile=True)
    sign_in_as(b, "grid_worker", new_b, neighbour)

    def in_b_queue():
        b.page.goto("/work")
        return b.page.locator(f"li[data-request='{rid}']").count() == 1

    until(in_b_queue, what="the request in the new B's queue")
    mine = b.page.locator(f"ul.my-posts li[data-post='{post_id}']")
    assert (mine.get_attribute("data-as"), mine.get_attribute("data-serving")) == ("B", "B")
    assert "正在为A岗" in mine.inner_text()
    b.check("queue-covering")

    # A sees who covers for them, and comes back
    a = Checked(browser, stack["console"], "roster-a", mobile=True)
    sign_in_as(a, "grid_worker", a_id, g)
    a.page.goto("/work")
    mine = a.page.locator(f"ul.my-posts li[data-post='{post_id}']")
    assert (mine.get_attribute("data-as"), mine.get_attribute("data-serving")) == ("A", "B")
    a.check("queue-covered")
    a.page.locator("#me-back button[type=submit]").click()
    a.page.wait_for_selector(".flash.ok")
    assert a.page.locator("[data-duty]").first.get_attribute("data-duty") == "on"
    assert a.page.locator(f"ul.my-posts li[data-post='{post_id}']").get_attribute("data-serving") == "A"
    a.check("back-on-duty")
    for c in (admin, b, a):
        c.close()
