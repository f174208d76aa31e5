"""KPI counting every few seconds, exactly once (adapters/counting.py), against the real store: the
counters always end equal to the sum of the requests' contributions -- after a crash between a batch
and the next count (the deltas are found again through the audit log), after a redelivery, and when
two processes count one partition's deltas during a rebalance, in either order."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from civicgrid_audit.adapters.auditlog import AuditLog, Signer
from civicgrid_audit.adapters.documents import upcast
from civicgrid_audit.adapters.projection import Projector
from civicgrid_audit.domain import kpi
from civicgrid_audit.settings import AuditSettings
from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import DEFAULT_CALENDAR
from civicgrid_contracts.events.grid import RequestAccepted, RequestAssigned
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_contracts.values import AreaPath, Location, TimeLimits
from civicgrid_runtime.bus import Delivery
from civicgrid_runtime.calendar import FixedCalendar

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
INTAKE, GRID = "intake.requests.v1", "grid.assignments.v1"
REQUESTS = [f"CNT-{i}" for i in range(8)]


def projector(db) -> Projector:
    """A process of audit, as far as counting goes (a new one has nothing in memory)."""
    log = AuditLog(db, Signer(AuditSettings().signing_key.get_secret_value()))
    return Projector(db, log, FixedCalendar(DEFAULT_CALENDAR))


def batch(topic: str, first_offset: int, envelopes: list[Envelope]) -> list[Delivery]:
    return [Delivery(env, topic, 0, first_offset + i) for i, env in enumerate(envelopes)]


def received(rid: str) -> Envelope:
    return Envelope.wrap(RequestReceived.starting_clocks(
        DEFAULT_CALENDAR, request_id=rid, service_code="S1", service_name="repair", location=Location(),
        description="x", channel="app", received_at=T0, time_limits=TimeLimits(response_hours=2, resolution_hours=24)),
        source="/civicgrid/intake", event_id=f"{rid}-received")


def assigned(rid: str, grid: str) -> Envelope:
    area = AreaPath(district="110105", street="110105001", community="110105001001", grid=grid)
    return Envelope.wrap(RequestAssigned(request_id=rid, area=area, assignee_id=f"staff-{grid[-1]}", holder="A",
                                         reason="A", map_version=1, assigned_at=T0 + timedelta(minutes=5)),
                         source="/civicgrid/grid", event_id=f"{rid}-assigned")


def accepted(rid: str) -> Envelope:
    return Envelope.wrap(RequestAccepted(request_id=rid, staff_id="staff-1", accepted_at=T0 + timedelta(minutes=30)),
                         source="/civicgrid/grid", event_id=f"{rid}-accepted")


GRIDS = ("110105001001001", "110105001001002")
RECEIVED = batch(INTAKE, 0, [received(r) for r in REQUESTS])
ASSIGNED = batch(GRID, 0, [assigned(r, GRIDS[i % 2]) for i, r in enumerate(REQUESTS)])
ACCEPTED_FIRST = batch(GRID, 8, [accepted(r) for r in REQUESTS[:4]])
ACCEPTED_REST = batch(GRID, 12, [accepted(r) for r in REQUESTS[4:]])


async def assert_counters_are_the_sum_of_contributions(db) -> None:
    expected: dict[str, dict[str, int]] = defaultdict(dict)
    async for doc in db["requests_00"].find({}):
        for cid, m in kpi.expanded(upcast("requests_00", doc)["kpi_contribution"]).items():
            kpi.add_into(expected[cid], m)
    counted = {c["_id"]: {k: v for k, v in c["m"].items() if v} async for c in db["kpi_counters"].find({})}
    counted = {cid: m for cid, m in counted.items() if m}  # e.g. the staff member it was taken from: zero
    assert counted == {cid: {k: v for k, v in m.items() if v} for cid, m in expected.items() if any(m.values())}
    assert counted["all|*|2026-11-02"]["received"] == len(REQUESTS)
    assert counted["all|*|2026-11-02"]["responded"] == len(REQUESTS)


async def test_a_crash_before_the_count_loses_nothing_and_a_redelivery_counts_nothing_twice(fresh_db):
    first = projector(fresh_db)
    await first.ensure_indexes()
    await first.apply(RECEIVED)
    await first.apply(ASSIGNED)
    assert await fresh_db["kpi_counters"].count_documents({}) == 0, "counted at the flush, not with the batch"
    await first.ledger.flush()
    await first.apply(ACCEPTED_FIRST)  # folded; the process dies before it counts them
    restarted = projector(fresh_db)
    await restarted.apply(ACCEPTED_FIRST)  # redelivered from the last commit
    await restarted.apply(ACCEPTED_REST)
    await restarted.ledger.flush()
    await assert_counters_are_the_sum_of_contributions(fresh_db)
    # a batch that comes again after it was counted adds nothing
    await restarted.apply(ACCEPTED_REST)
    await restarted.ledger.flush()
    await assert_counters_are_the_sum_of_contributions(fresh_db)


async def test_a_restart_past_deltas_it_never_counted_finds_them_in_the_requests_through_the_log(fresh_db):
    first = projector(fresh_db)
    await first.ensure_indexes()
    for b in (RECEIVED, ASSIGNED, ACCEPTED_FIRST):
        await first.apply(b)
    await first.ledger.flush()
    await first.apply(ACCEPTED_REST)  # committed by the consumer, never counted: the process dies
    restarted = projector(fresh_db)
    late = batch(GRID, 16, [accepted("CNT-other")])  # the next batch of that partition
    await restarted.apply(late)
    await restarted.ledger.flush()
    await assert_counters_are_the_sum_of_contributions(fresh_db)


@pytest.mark.parametrize("first_to_count", ["old owner", "new owner"])
async def test_two_processes_counting_one_partition_in_a_rebalance_count_each_delta_once(fresh_db, first_to_count):
    old = projector(fresh_db)
    await old.ensure_indexes()
    for b in (RECEIVED, ASSIGNED, ACCEPTED_FIRST):
        await old.apply(b)  # not counted yet when the partitions move
    new = projector(fresh_db)
    await new.apply(ACCEPTED_REST)  # the new owner's first batch there: it takes the old owner's deltas too
    for owner in [old, new] if first_to_count == "old owner" else [new, old]:
        await owner.ledger.flush()
    await assert_counters_are_the_sum_of_contributions(fresh_db)


async def test_a_count_that_another_process_overtook_between_its_read_and_its_write_adds_nothing_twice(
        fresh_db, monkeypatch):
    """The old owner reads the counters, the new owner counts the same deltas, then the old owner's
    write comes: its guard (the offsets the counter recorded) refuses it, and it counts what is left."""
    from civicgrid_audit.adapters import counting

    old = projector(fresh_db)
    await old.ensure_indexes()
    await old.apply(RECEIVED)
    await old.apply(ASSIGNED)
    await old.ledger.flush()  # the counters exist, with the offsets they counted
    await old.apply(ACCEPTED_FIRST)
    new = projector(fresh_db)
    await new.apply(ACCEPTED_REST)  # takes ACCEPTED_FIRST's deltas too
    write = counting.bulk_in_chunks
    overtaken: list[bool] = []

    async def new_owner_counts_first(collection, ops):
        if not overtaken:
            overtaken.append(True)
            await new.ledger.flush()
        await write(collection, ops)

    monkeypatch.setattr(counting, "bulk_in_chunks", new_owner_counts_first)
    await old.ledger.flush()
    assert overtaken
    await assert_counters_are_the_sum_of_contributions(fresh_db)
