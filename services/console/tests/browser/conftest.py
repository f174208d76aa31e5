"""Fixtures of the browser tests: the real stack (the four services as processes against the real
broker and store, the identity provider (Dex) they trust, the console in front of them, signing
staff in at that provider or, in development, as a picked demo person) and Debian's Chromium
driven by Playwright. A missing browser or provider is a failing test, never a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.console import AXE, CHROMIUM, CHROMIUM_ARGS, ROOT, ConsoleProcess
from tests.support.platform import Platform, free_port

sys.path.insert(0, str(ROOT / "deploy" / "local"))
import identity  # noqa: E402 - deploy/local is not a package


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    """{service name: url} of a fresh platform and console, and the provider's ``issuer``;
    CIVICGRID_CONSOLE_STACK may name a file of "name url" lines of a stack already running (a
    developer's quicker loop)."""
    given = os.environ.get("CIVICGRID_CONSOLE_STACK")
    if given:
        yield dict(line.split() for line in Path(given).read_text().splitlines() if line.strip())
        return
    infra = request.getfixturevalue("infra")
    console_port, spare_port, dex_port = free_port(), free_port(), free_port()
    console_url = f"http://127.0.0.1:{console_port}"
    # a provider of the stack's own, which knows this console's callback (its port is the stack's),
    # and that of a second console a test may start (spare_console_port)
    dex = identity.start(dex_port, tmp_path_factory.mktemp("identity"),
                         console_urls=[console_url, f"http://127.0.0.1:{spare_port}"])
    oidc = {k: v for k, v in identity.settings_env(dex_port).items() if k.startswith("CIVICGRID_OIDC_")}
    p = Platform(infra.kafka, infra.mongodb, extra_env=oidc)
    console = None
    try:
        identity.wait_ready(dex_port, dex)
        p.start()
        logs = Path(os.environ.get("CIVICGRID_STATE_DIR", ROOT / ".run")) / "logs" / f"platform-{p.tag}"
        console = ConsoleProcess(p, logs / "console.log", port=console_port,
                                 extra_env={**oidc, **identity.console_env(console_url)})
        console.wait_ready()
        yield {**{svc: p.url(svc) for svc in p.services}, "console": console.url, "issuer": identity.issuer(dex_port),
               "spare_console_port": str(spare_port)}
    except Exception:
        for sp in p.services.values():
            print(f"--- {sp.name} log ---\n{sp.tail()}")
        raise
    finally:
        if console:
            console.stop()
        p.stop()
        dex.terminate()
        try:
            dex.wait(10)
        except subprocess.TimeoutExpired:
            dex.kill()
            dex.wait()


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
