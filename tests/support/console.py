"""Helpers of the console's browser tests: the four services as processes (tests/support/platform.py)
against the real broker and store, the console as a process in front of them, and Debian's
Chromium driven by Playwright. A missing browser is a failing test, never a skip."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.support.platform import BIN, ROOT, Platform, free_port  # noqa: F401

CHROMIUM = os.environ.get("CIVICGRID_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ASSETS = ROOT / "services" / "console" / "node_modules"
AXE = ASSETS / "axe-core" / "axe.min.js"
SHOTS = ROOT / ".artifacts" / "console"
AXE_SOURCE = AXE.read_text() if AXE.exists() else ""


def until(check, *, timeout: float = 90, every: float = 1.0, what: str = "condition"):
    """``check()``'s first truthy answer, asked every ``every`` seconds for up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = check()
        if out:
            return out
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class ConsoleProcess:
    def __init__(self, services: Platform | dict[str, str], log_path: Path, *, port: int | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        """In front of a platform's services (or of services at the URLs given, by name)."""
        self.port = port or free_port()
        self.log_path = log_path
        urls = services if isinstance(services, dict) else {svc: services.url(svc) for svc in services.services}
        env = dict(os.environ, CONSOLE_HTTP_PORT=str(self.port), CIVICGRID_ENV="development",
                   **{f"CONSOLE_{svc.upper()}_URL": url for svc, url in urls.items()},
                   **(extra_env or {}))
        self.proc = subprocess.Popen([str(BIN / "civicgrid-console"), "serve"], cwd=ROOT, env=env,
                                     stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                     start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"console exited:\n{self.log_path.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"console not ready:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Checked:
    """A browser page that, on every check, saves a screenshot and runs axe-core in the same
    browser (serious and critical violations fail), and that fails on any CSP violation."""

    def __init__(self, browser, base: str, name: str, *, mobile: bool = False) -> None:
        size = {"width": 390, "height": 844} if mobile else {"width": 1280, "height": 900}
        self.context = browser.new_context(viewport=size, locale="zh-CN", timezone_id="Asia/Shanghai",
                                           base_url=base)
        self.page = self.context.new_page()
        self.name = name
        self.csp_violations: list[str] = []
        self.page.on("console", self._console)
        self.shots = 0

    def _console(self, msg) -> None:
        if "Content Security Policy" in msg.text or "Content-Security-Policy" in msg.text:
            self.csp_violations.append(msg.text)

    def check(self, label: str) -> None:
        self.page.wait_for_load_state("networkidle")
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.shots += 1
        self.page.screenshot(path=str(SHOTS / f"{self.name}-{self.shots:02d}-{label}.png"), full_page=True)
        if not self.page.evaluate("() => typeof window.axe !== 'undefined'"):
            self.page.evaluate(AXE_SOURCE)  # DevTools evaluation: the page's CSP does not apply to it
        result = self.page.evaluate("async () => { const r = await axe.run(document, "
                                    "{runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', "
                                    "'wcag21aa']}}); return r.violations.map(v => ({id: v.id, impact: "
                                    "v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => "
                                    "n.target.join(' '))})); }")
        bad = [v for v in result if v["impact"] in ("serious", "critical")]
        assert not bad, f"axe on {self.page.url} ({label}):\n{json.dumps(bad, indent=1, ensure_ascii=False)}"
        assert not self.csp_violations, self.csp_violations

    def close(self) -> None:
        self.context.close()


def sign_in_as(c: Checked, role: str, sub: str, area: str = "") -> None:
    """The development sign-in's own form (role, id, area)."""
    c.page.goto("/signin")
    form = c.page.locator("#custom-signin")
    form.locator("select[name=role]").select_option(role)
    form.locator("input[name=sub]").fill(sub)
    form.locator("input[name=area]").fill(area)
    form.locator("button[type=submit]").click()
    c.page.wait_for_load_state()


def report_at_a_building(stack, grid: str, *, description: str, facility: str) -> str:
    """A resident's report of a broken ``facility`` at a building of ``grid``, through intake's
    public API (a new request, not a duplicate); its request id."""
    import httpx

    from tests.support.platform import daytime_visit

    b = httpx.get(f"{stack['grid']}/v1/map/buildings", params={"area": grid, "limit": 1}, timeout=10).json()
    r = httpx.post(f"{stack['intake']}/api/v1/requests", timeout=30, json={
        "service_code": "public_facility", "location": {"building_id": b["buildings"][0]["building_id"]},
        "description": description, "attributes": {"facility": facility},
        "channel": "app", "preferred_time": daytime_visit()})
    assert r.status_code == 201 and not r.json().get("duplicate_of"), r.text
    return r.json()["request_id"]

