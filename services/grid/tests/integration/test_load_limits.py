"""Load limits under 1,000 concurrent requests. Independent of the other modules and of their order:
its own grid service, consumer group and database (the module's harness), and it counts only the
events of its own requests."""

from __future__ import annotations

import asyncio
import time

import pytest

from civicgrid_grid.demo.roster import staff_ids_for_grid

from .conftest import TEST_LIMIT

pytestmark = [pytest.mark.infra, pytest.mark.asyncio(loop_scope="session")]


async def test_load_limits_hold_under_1000_concurrent_requests(harness):
    g = harness.grid(12)  # a grid of another community than the other tests
    envs = [harness.received(g) for _ in range(1000)]
    await harness.publish(*envs)
    deadline = time.monotonic() + 120
    ids = {e.subject for e in envs}
    while time.monotonic() < deadline:
        done = {e.subject for e in harness.collector.events if e.type == "civicgrid.request.assigned"} & ids
        if len(done) == len(ids):
            break
        await asyncio.sleep(0.2)
    assert len(done) == 1000
    by_holder: dict[str, int] = {}
    for e in harness.collector.events:
        if e.subject in ids and e.type == "civicgrid.request.assigned":
            by_holder[e.data.assignee_id] = by_holder.get(e.data.assignee_id, 0) + 1
    staff = await harness.svc.ctx.staff.col.find({"_id": {"$in": list(by_holder)}}).to_list(None)
    for s in staff:
        assert s["load"] <= s["limit"] or s["level"] == "district", s["_id"]
        held = len([r for r in s["holding"] if r in ids])
        assert held == by_holder[s["_id"]]  # every assignment counted exactly once
    a_id, b_id, head = staff_ids_for_grid(g)
    assert by_holder[a_id] == TEST_LIMIT and by_holder[b_id] == TEST_LIMIT and by_holder[head] == 2 * TEST_LIMIT
