"""Fixtures of the browser tests: the real stack (the four services as processes against the real
broker and store, the console in front of them) and Debian's Chromium driven by Playwright. A
missing browser is a failing test, never a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.console import AXE, CHROMIUM, CHROMIUM_ARGS, ROOT, ConsoleProcess
from tests.support.platform import Platform


@pytest.fixture(scope="module")
def stack(request):
    """{service name: url} of a fresh platform and console; CIVICGRID_CONSOLE_STACK may name a file
    of "name url" lines of a stack already running (a developer's quicker loop)."""
    given = os.environ.get("CIVICGRID_CONSOLE_STACK")
    if given:
        yield dict(line.split() for line in Path(given).read_text().splitlines() if line.strip())
        return
    infra = request.getfixturevalue("infra")
    p = Platform(infra.kafka, infra.mongodb)
    console = None
    try:
        p.start()
        logs = Path(os.environ.get("CIVICGRID_STATE_DIR", ROOT / ".run")) / "logs" / f"platform-{p.tag}"
        console = ConsoleProcess(p, logs / "console.log")
        console.wait_ready()
        yield {**{svc: p.url(svc) for svc in p.services}, "console": console.url}
    except Exception:
        for sp in p.services.values():
            print(f"--- {sp.name} log ---\n{sp.tail()}")
        raise
    finally:
        if console:
            console.stop()
        p.stop()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is required at {CHROMIUM}: make setup installs Debian's chromium", pytrace=False)
    if not AXE.exists():
        pytest.fail(f"axe-core is missing at {AXE}: make setup runs npm ci", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


