"""A minimal service built only from the shared runtime, used by the runtime's integration tests.

It consumes ``RequestReceived`` and, in one single-document step, records the request and
enqueues a caused ``RequestAssigned`` in the document's outbox (the pattern every real service
follows). Run as ``python example_service.py`` with ``EXAMPLE_GROUP`` and ``EXAMPLE_DB`` set; set
``CIVICGRID_CRASH_AT=example.after_write`` to die between the write and the publish/commit.
"""

from __future__ import annotations

import asyncio
import os
import signal

from civicgrid_contracts import topics
from civicgrid_contracts.events.grid import RequestAssigned
from civicgrid_contracts.values import AreaPath
from civicgrid_runtime import Delivery, Runtime, ServiceSettings
from civicgrid_runtime.store import mark_applied, not_applied, update_with_events


class ExampleFailure(Exception):
    pass


def build_handler(rt: Runtime):
    col = rt.db["requests"]
    relay = rt.relay

    async def handle(batch: list[Delivery]) -> None:
        for d in batch:
            env = d.envelope
            if env.type != "civicgrid.request.received":
                continue
            if env.data.description == "always-fails":
                raise ExampleFailure("this handler always fails for this message")
            assigned = RequestAssigned(
                request_id=env.subject, area=AreaPath(grid="110105001001001"), assignee_id="staff-1", holder="A",
                reason="A: on duty", map_version=1, assigned_at=env.time,
            )
            await update_with_events(
                col, relay,
                filter={"_id": env.subject, **not_applied(env.id)},
                update={"$inc": {"applied_count": 1}, **mark_applied(env.id)},
                events=[env.caused(assigned, source=rt.settings.source)],
                upsert=True, crash_point_name="example.after_write",
            )

    return handle


async def open_example(group: str, db: str, *, merge_partitions: bool = False) -> Runtime:
    settings = ServiceSettings(service_name="example", consumer_group=group, database=db, consumer_max_attempts=3,
                               consumer_backoff_seconds=0.05, outbox_sweep_seconds=0.5)
    rt = await Runtime.open(settings)
    rt.outbox([rt.db["requests"]])
    rt.consume([topics.REQUESTS.name], build_handler(rt), merge_partitions=merge_partitions)
    return rt


async def main() -> None:
    rt = await open_example(os.environ["EXAMPLE_GROUP"], os.environ["EXAMPLE_DB"])
    await rt.start()
    await rt.consumers[0].wait_assigned()
    print("READY", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await rt.stop()


if __name__ == "__main__":
    asyncio.run(main())
