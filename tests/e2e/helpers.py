"""Small helpers the end-to-end flows share: waiting for an asynchronous effect, the demo map."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tests.e2e.conftest import token


async def eventually(fn, *, timeout: float = 60.0, interval: float = 0.25, what: str = "condition"):
    """Poll ``fn`` (async, returns a truthy value when done) until it succeeds or time runs out."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await fn()
            if last:
                return last
        except (httpx.HTTPError, AssertionError, KeyError) as exc:
            last = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


async def grid_point(client: httpx.AsyncClient, grid_url: str, index: int = 0) -> dict[str, Any]:
    """A point well inside the ``index``-th demo grid (its bounding-box centre) and that grid's code.
    Flows use different grids so that one flow's staff changes do not leak into another."""
    r = await client.get(f"{grid_url}/v1/map/grids", params={"limit": 50}, headers=token("admin"))
    r.raise_for_status()
    g = (r.json() if isinstance(r.json(), list) else r.json()["grids"])[index]
    min_lon, min_lat, max_lon, max_lat = g["bbox"]
    return {"grid": g["grid"], "lat": (min_lat + max_lat) / 2, "lon": (min_lon + max_lon) / 2}
