"""Print one request's trace as a tree, from the local Jaeger's query API.

    python deploy/local/trace.py REQUEST_ID          # the trace of the HTTP request that submitted it
    python deploy/local/trace.py TRACE_ID            # 32 hex digits: that trace
    python deploy/local/trace.py REQUEST_ID --store  # with every store command too

The Jaeger that ``make run`` starts (``CIVICGRID_JAEGER_URL``, else http://127.0.0.1:16686) keeps the
traces in memory. Its web UI is built from a repository of its own, not part of the Go module, so
that address serves Jaeger's placeholder page and its query API; this prints what the UI would.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.parse
import urllib.request
from collections import defaultdict
from typing import Any


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def find_trace(jaeger: str, request_id: str) -> str:
    query = urllib.parse.urlencode({"service": "civicgrid-intake", "lookback": "7d", "limit": "20",
                                    "tags": json.dumps({"civicgrid.request_id": request_id})})
    found = get(f"{jaeger}/api/traces?{query}")["data"]
    # the trace that starts at intake's HTTP span (the same events published again by another
    # process, or later actions on the request, make traces of their own)
    for t in found:
        for s in t["spans"]:
            if s["operationName"].startswith(("POST /api/v1/requests", "POST /open311")) and not s.get("references"):
                return t["traceID"]
    if found:
        return found[0]["traceID"]
    sys.exit(f"no trace in {jaeger} has a span of civicgrid-intake tagged civicgrid.request_id={request_id}")


def render(trace: dict[str, Any], *, store: bool) -> list[str]:
    spans = {s["spanID"]: s for s in trace["spans"]}
    children: dict[str | None, list[dict]] = defaultdict(list)
    for s in spans.values():
        parents = [r["spanID"] for r in s.get("references", []) if r["spanID"] in spans]
        children[parents[0] if parents else None].append(s)
    start = min(s["startTime"] for s in spans.values())
    lines: list[str] = []

    def walk(span: dict, depth: int) -> None:
        tags = {t["key"]: t["value"] for t in span.get("tags", [])}
        if tags.get("db.system") and not store:
            return
        service = trace["processes"][span["processID"]]["serviceName"].removeprefix("civicgrid-")
        what = tags.get("cloudevents.event_type", "").removeprefix("civicgrid.")
        lines.append(f"{(span['startTime'] - start) / 1000:9.1f} ms {span['duration'] / 1000:8.1f} ms  "
                     f"{'  ' * depth}{service}: {span['operationName']}{f'  [{what}]' if what else ''}")
        for child in sorted(children[span["spanID"]], key=lambda c: c["startTime"]):
            walk(child, depth + 1)

    for root in sorted(children[None], key=lambda c: c["startTime"]):
        walk(root, 0)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("id", help="a request id, or a trace id (32 hex digits)")
    parser.add_argument("--jaeger", default=os.environ.get("CIVICGRID_JAEGER_URL", "http://127.0.0.1:16686"))
    parser.add_argument("--store", action="store_true", help="show store commands too")
    args = parser.parse_args()
    trace_id = args.id if re.fullmatch(r"[0-9a-f]{32}", args.id) else find_trace(args.jaeger, args.id)
    trace = get(f"{args.jaeger}/api/traces/{trace_id}")["data"][0]
    print(f"trace {trace_id} ({len(trace['spans'])} spans)   start      took")
    print("\n".join(render(trace, store=args.store)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
