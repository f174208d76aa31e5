"""What one request costs, measured by the full-pipeline benchmark, written as a JSON file that
``bench/capacity.py`` turns into ``docs/capacity.md``.

The file (``.run/bench/costs.json`` unless ``BENCH_COSTS_FILE`` names another, git-ignored) holds,
per request that went from submission to the audit trail:
- ``cpu_seconds_per_request``: CPU seconds (user + system, psutil) of each service process, and of
  the local broker and store when they ran from this machine's state folder;
- ``store``: documents each service read and wrote (PyMongo command monitoring,
  ``civicgrid_runtime.storeprofile``), commands, and the bytes its database grew by (``dbStats``);
- ``topics``: events per request and bytes per event (key + value + headers, before compression)
  on each topic, counted once per event id.
"""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def profiled_shapes(folder: Path) -> Iterator[tuple[str, dict[str, dict]]]:
    """(process name, its command shapes so far) of each ``<app>-<pid>.json`` store profile."""
    for f in folder.glob("*.json"):
        try:
            shapes = json.loads(f.read_text())
        except (json.JSONDecodeError, OSError):  # being replaced at this moment: the next read has it
            continue
        yield f.stem.rsplit("-", 1)[0].removeprefix("civicgrid-"), shapes


def store_profile(folder: Path) -> dict[str, dict[str, float]]:
    """Commands and documents read/written so far, per process name."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"commands": 0, "docs_read": 0, "docs_written": 0})
    for name, shapes in profiled_shapes(folder):
        for s in shapes.values():
            out[name]["commands"] += s["count"]
            out[name]["docs_read"] += s.get("docs_read", 0)
            out[name]["docs_written"] += s.get("docs_written", 0)
    return dict(out)


def writes_by_collection(folder: Path) -> dict[str, dict[str, int]]:
    """Documents written so far, per process name and collection (from each command shape's
    collection: ``update[12] requests_00 {_id,_v}``)."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for name, shapes in profiled_shapes(folder):
        for shape, s in shapes.items():
            parts = shape.split(" ")
            if s.get("docs_written") and len(parts) > 1:
                out[name][parts[1]] += s["docs_written"]
    return {svc: dict(cols) for svc, cols in out.items()}


def record_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | tuple) -> int:
    """An event's bytes as produced: key, value and headers, before the producer compresses a batch."""
    return len(key or b"") + len(value or b"") + sum(len(k) + len(v or b"") for k, v in headers or ())


class TopicTally:
    """Events and bytes per topic of the requests a benchmark submitted, once per event id (on a
    shared broker another platform may publish the same events again)."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, tuple[str, int]]] = defaultdict(dict)  # request -> event id -> (topic, bytes)

    def add(self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        event_id = dict(headers or ()).get("ce_id", b"").decode()
        self.seen[(key or b"").decode()].setdefault(event_id, (topic, record_size(key, value, headers)))

    def per_request(self, requests: set[str]) -> dict[str, dict[str, float]]:
        counts: dict[str, int] = defaultdict(int)
        sizes: dict[str, int] = defaultdict(int)
        for rid in requests:
            for topic, size in self.seen.get(rid, {}).values():
                counts[topic] += 1
                sizes[topic] += size
        n = max(1, len(requests))
        return {t: {"events_per_request": round(counts[t] / n, 3), "bytes_per_event": round(sizes[t] / counts[t])}
                for t in sorted(counts)}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def costs(*, requests: int, seconds: float, cpu: dict[str, float], profile_before: dict[str, dict[str, float]],
          profile_after: dict[str, dict[str, float]], db_growth: dict[str, int], topics: dict[str, dict[str, float]],
          run: dict[str, Any], writes_before: dict[str, dict[str, int]] | None = None,
          writes_after: dict[str, dict[str, int]] | None = None) -> dict[str, Any]:
    """The costs document from what the benchmark measured over ``requests`` requests
    (``writes_before``/``writes_after``: ``writes_by_collection`` at the start and the end)."""
    n = max(1, requests)
    store = {}
    for svc, after in sorted(profile_after.items()):
        before = profile_before.get(svc, {})
        delta = {k: after[k] - before.get(k, 0) for k in after}
        if not any(delta.values()) and not db_growth.get(svc):
            continue  # a tool's process (a demo load) that did nothing during the run
        store[svc] = {"docs_read_per_request": round(delta["docs_read"] / n, 2),
                      "docs_written_per_request": round(delta["docs_written"] / n, 2),
                      "commands_per_request": round(delta["commands"] / n, 2),
                      "bytes_per_request": round(db_growth.get(svc, 0) / n)}
        if writes_after is not None:
            before_cols = (writes_before or {}).get(svc, {})
            by_col = {c: round((v - before_cols.get(c, 0)) / n, 2) for c, v in sorted(writes_after.get(svc, {}).items())}
            store[svc]["docs_written_per_request_by_collection"] = {c: v for c, v in by_col.items() if v}
    return {
        "run": {"at": datetime.now(UTC).isoformat(timespec="seconds"), "commit": git_commit(),
                "requests": requests, "seconds": round(seconds, 1), **run},
        "cpu_seconds_per_request": {k: round(v / n, 6) for k, v in sorted(cpu.items())},
        "store": store,
        "topics": topics,
        "events_per_request": round(sum(t["events_per_request"] for t in topics.values()), 3),
    }


def write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
