"""The unit layer's time: every test that needs no broker, store or browser, run with none of them.

Issue 21 asks that the handlers' and domain's tests run on in-memory fakes in under 30 s. This runs
``make unit`` (``pytest --fakes-only`` on one worker per core) in a clean environment (no broker or
store address, not CI) and prints the wall time beside that goal; a test of that layer that reaches
for a real part fails there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 30


def main() -> int:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL", "CI") and not k.startswith("CIVICGRID_")}
    env["CIVICGRID_ENV"] = "development"
    t = time.monotonic()
    run = subprocess.run(["make", "--no-print-directory", "unit"], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    seconds = time.monotonic() - t
    summary = (re.findall(r"^=* ?(\d+ (?:passed|failed).*?) ?=*$", run.stdout, re.M) or ["(no summary)"])[-1]
    print(f"unit layer (`make unit`: fakes only, no infrastructure, a worker per core): {summary}")
    print(f"  wall time {seconds:.1f} s, goal < {GOAL_SECONDS} s: {'met' if seconds < GOAL_SECONDS else 'NOT MET'}")
    print(f"RESULT unit_layer seconds={seconds:.1f} exit={run.returncode}")
    if run.returncode:
        print(run.stdout[-3000:])
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
