"""Lighthouse (from the npm registry, driving the system Chromium) on the resident's and the grid
worker's pages: accessibility >= 95 and performance >= 90 is the goal (issue 23). Starts the four
services and the console against the broker and store ``make bench`` provides; the worker's page is
opened with a session cookie sealed the way the console seals a development sign-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from tests.support.console import ASSETS, CHROMIUM, CHROMIUM_ARGS, ConsoleProcess  # noqa: E402
from tests.support.platform import Platform  # noqa: E402

LIGHTHOUSE = ASSETS / "lighthouse" / "cli" / "index.js"
GOALS = {"accessibility": 95, "performance": 90}


def worker_cookie(grid: str) -> str:
    from civicgrid_console.adapters.session_cookie import SessionCodec
    from civicgrid_console.domain.session import Session
    from civicgrid_console.settings import ConsoleSettings
    from civicgrid_runtime.auth import mint_token

    settings = ConsoleSettings()
    sub = f"s{grid}-1"
    s = Session(lang="zh")
    s.sign_in(sub=sub, role="grid_worker", area=grid, label=sub,
              token=mint_token(secret=settings.auth_secret.get_secret_value(), sub=sub, role="grid_worker", area=grid))
    codec = SessionCodec(settings.session_secret.get_secret_value(), max_age_seconds=3600)
    return codec.seal(s.dump())


def lighthouse(url: str, cookie: str | None = None) -> dict[str, float]:
    cmd = ["node", str(LIGHTHOUSE), url, "--quiet", "--output=json", "--output-path=stdout",
           "--only-categories=accessibility,performance", f"--chrome-path={CHROMIUM}",
           f"--chrome-flags={' '.join(CHROMIUM_ARGS)}"]
    if cookie:
        cmd.append(f"--extra-headers={json.dumps({'Cookie': f'cg_session={cookie}'})}")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "CHROME_PATH": CHROMIUM})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    report = json.loads(out.stdout)
    return {k: round(100 * report["categories"][k]["score"]) for k in GOALS}


def main() -> int:
    import httpx

    p = Platform(os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["MONGODB_URL"])
    console = None
    try:
        p.start()
        console = ConsoleProcess(p, Path(os.environ.get("CIVICGRID_STATE_DIR", ROOT / ".run")) / "logs" /
                                 f"platform-{p.tag}" / "console.log")
        console.wait_ready()
        grid = httpx.get(f"{p.url('grid')}/v1/map/grids", params={"limit": 1}).json()["grids"][0]["grid"]
        pages = [("resident: catalogue", "/report", None), ("resident: report form", "/report/sanitation", None),
                 ("grid worker: queue", "/work", worker_cookie(grid))]
        failed = False
        for name, path, cookie in pages:
            scores = lighthouse(console.url + path, cookie)
            ok = all(scores[k] >= goal for k, goal in GOALS.items())
            failed |= not ok
            print(f"lighthouse {name:<24} accessibility {scores['accessibility']:3d}  performance "
                  f"{scores['performance']:3d}  (goal {GOALS['accessibility']}/{GOALS['performance']}: "
                  f"{'met' if ok else 'NOT met'})", flush=True)
        return 1 if failed else 0
    finally:
        if console:
            console.stop()
        p.stop()


if __name__ == "__main__":
    raise SystemExit(main())
