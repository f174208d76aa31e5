"""Audit integration fixtures: real Kafka + real store, unique database and consumer group per test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest_asyncio

from civicgrid_audit.bootstrap import AuditService, bootstrap
from civicgrid_audit.settings import AuditSettings
from civicgrid_contracts import topics
from civicgrid_runtime.testing import eventually as shared_eventually
from civicgrid_runtime.testing import unique


async def start_audit(infra, *, database: str, group: str, offset_reset: str = "latest", scan: bool = True,
                      **over) -> AuditService:
    s = AuditSettings(kafka_bootstrap_servers=infra.kafka, mongodb_url=infra.mongodb, database=database,
                      consumer_group=group, scan_seconds=0.2, checkpoint_seconds=3600, kpi_flush_seconds=0.2,
                      head_flush_seconds=1, **over)
    svc = await bootstrap(s, offset_reset=offset_reset, scan=scan)
    await svc.runtime.start()
    return svc


async def settle(*services: AuditService) -> None:
    """Wait until the group's partitions are all assigned and positions resolved (so 'latest' is fixed)."""
    deadline = time.monotonic() + 60
    while True:
        assigned = [tp for s in services for tp in s.consumer._consumer.assignment()]
        if len(assigned) >= sum(t.partitions for t in topics.EVENT_TOPICS) and len(set(assigned)) == len(assigned) and all(
                s.consumer._consumer.assignment() for s in services):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"partitions not assigned: {len(assigned)}")
        await asyncio.sleep(0.1)
    for s in services:
        for tp in s.consumer._consumer.assignment():
            await s.consumer._consumer.position(tp)
    await asyncio.sleep(0.3)


async def eventually(check: Callable[[], Awaitable], *, timeout: float = 40.0, interval: float = 0.2):
    """The shared poller, with the longer default deadline these integration tests need."""
    return await shared_eventually(check, timeout=timeout, interval=interval)


@pytest_asyncio.fixture
async def audit(infra, mongo):
    """An audit service without the deadline scanner (tests of projections on past-dated events)."""
    db = unique("audit_test")
    svc = await start_audit(infra, database=db, group=unique("audit_grp"), scan=False)
    await settle(svc)
    yield svc
    await svc.runtime.stop()
    await mongo.drop_database(db)
