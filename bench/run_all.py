"""`make bench`: every benchmark in one run, against the real broker and store.

Runs the foundation benchmark, then each service's ``services/<svc>/bench/run.py`` that exists,
then the full-pipeline benchmark (``bench/pipeline.py``) and the scaling one (``bench/scaling.py``).
Each prints its own table; a failing part is reported and the others still run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PART_TIMEOUT = float(os.environ.get("BENCH_PART_TIMEOUT", "420"))  # seconds; each part stops by itself
PARTS = [ROOT / "bench" / "foundation.py"]
PARTS += [ROOT / "services" / s / "bench" / "run.py" for s in ("intake", "grid", "matching", "audit")]
PARTS += [ROOT / "bench" / "pipeline.py", ROOT / "bench" / "scaling.py"]


def main() -> int:
    import asyncio

    from civicgrid_runtime.bus import ensure_topics

    # a fresh broker has no topics yet: create the registry's before any part reads offsets
    asyncio.run(ensure_topics(os.environ["KAFKA_BOOTSTRAP_SERVERS"]))
    only = set(sys.argv[1:])
    failed = []
    for part in PARTS:
        if not part.exists() or (only and not any(o in str(part) for o in only)):
            continue
        name = part.relative_to(ROOT)
        print(f"\n===== {name} =====", flush=True)
        t = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, str(part)], cwd=ROOT, env=os.environ, timeout=PART_TIMEOUT)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        print(f"----- {name}: exit {code} in {time.monotonic() - t:.0f}s", flush=True)
        if code != 0:
            failed.append(str(name))
    if failed:
        print("benchmarks that failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
