"""Where a service's store time goes: per command shape, how many and how long (opt-in).

Set ``CIVICGRID_STORE_PROFILE`` to a folder and every client made by ``store.connect`` records,
through PyMongo's command monitoring, each command's shape -- command, collection, the field names
of its filter -- with its count and total/max duration, and writes them every few seconds to
``<folder>/<app>-<pid>.json``, with the documents each shape read and wrote (from the replies:
a cursor's batch, a write's count). ``python -m civicgrid_runtime.storeprofile <folder>`` prints
the shapes that took the most time across all processes. The benchmarks use it to name the queries
that load the store and to count the documents a request reads and writes (bench/costs.py).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pymongo import monitoring

#: where the filter of each command sits in its body
_FILTERS = {"find": "filter", "count": "query", "findAndModify": "query", "distinct": "query"}
_LISTS = {"update": ("updates", "q"), "delete": ("deletes", "q")}


def command_shape(name: str, body: dict[str, Any]) -> str:
    collection = body.get(name)
    if name in _FILTERS:
        keys = sorted((body.get(_FILTERS[name]) or {}).keys())
    elif name in _LISTS:
        items = body.get(_LISTS[name][0]) or []
        keys = sorted((items[0].get(_LISTS[name][1]) or {}).keys()) if items else []
        name = f"{name}[{len(items)}]" if len(items) > 1 else name
    elif name == "insert":
        n = len(body.get("documents") or [])
        name, keys = (f"insert[{n}]" if n > 1 else "insert"), []
    else:
        keys = []
    return f"{name} {collection} {{{','.join(keys)}}}" if isinstance(collection, str) else name


def documents(name: str, reply: dict[str, Any]) -> tuple[int, int]:
    """(documents read, documents written) by one successful command, from its reply."""
    if name in ("find", "aggregate", "getMore"):
        cursor = reply.get("cursor") or {}
        return len(cursor.get("firstBatch") or cursor.get("nextBatch") or ()), 0
    if name == "findAndModify":
        changed = (reply.get("lastErrorObject") or {}).get("n", 0)
        return (1 if reply.get("value") is not None else 0), changed
    if name == "update":
        return 0, int(reply.get("nModified", 0)) + len(reply.get("upserted") or ())
    if name in ("insert", "delete"):
        return 0, int(reply.get("n", 0))
    return 0, 0


class StoreProfile(monitoring.CommandListener):
    def __init__(self, path: Path, *, interval: float = 5.0) -> None:
        self.path = path
        self.interval = interval
        self._started: dict[int, str] = {}
        #: shape -> [count, total seconds, max seconds, documents read, documents written]
        self._stats: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._last_write = time.monotonic()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self._started[event.request_id] = command_shape(event.command_name, event.command)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._record(event, documents(event.command_name, event.reply))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._record(event, (0, 0))

    def _record(self, event, docs: tuple[int, int]) -> None:
        shape = self._started.pop(event.request_id, event.command_name)
        seconds = event.duration_micros / 1e6
        with self._lock:
            s = self._stats.setdefault(shape, [0, 0.0, 0.0, 0, 0])
            s[0] += 1
            s[1] += seconds
            s[2] = max(s[2], seconds)
            s[3] += docs[0]
            s[4] += docs[1]
        if time.monotonic() - self._last_write > self.interval:
            self.write()

    def write(self) -> None:
        self._last_write = time.monotonic()
        with self._lock:
            data = {k: {"count": v[0], "seconds": round(v[1], 4), "max_ms": round(v[2] * 1000, 2),
                        "docs_read": v[3], "docs_written": v[4]} for k, v in self._stats.items()}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.path)


def listeners(app_name: str) -> list[monitoring.CommandListener]:
    folder = os.environ.get("CIVICGRID_STORE_PROFILE")
    if not folder:
        return []
    import atexit

    Path(folder).mkdir(parents=True, exist_ok=True)
    profile = StoreProfile(Path(folder) / f"{app_name}-{os.getpid()}.json")
    atexit.register(profile.write)  # the last few seconds too
    return [profile]


def summary(folder: Path, top: int = 25) -> list[tuple[str, str, int, float, float]]:
    """(process, shape, count, seconds, max ms), most time first."""
    rows = []
    for f in sorted(folder.glob("*.json")):
        for shape, s in json.loads(f.read_text()).items():
            rows.append((f.stem.rsplit("-", 1)[0], shape, s["count"], s["seconds"], s["max_ms"]))
    return sorted(rows, key=lambda r: -r[3])[:top]


def main() -> None:
    for proc, shape, count, seconds, max_ms in summary(Path(sys.argv[1])):
        print(f"{seconds:9.2f}s {count:8d} {1000 * seconds / max(count, 1):8.2f}ms avg {max_ms:9.1f}ms max  "
              f"{proc:18s} {shape}")


if __name__ == "__main__":
    main()
