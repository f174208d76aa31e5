"""Escalation climbing two levels; no double escalation with two replicas of the same group."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY

from civicgrid_audit.adapters.documents import CURRENT, request_summary
from civicgrid_audit.domain import kpi, timeline
from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import DEFAULT_CALENDAR
from civicgrid_contracts.events.grid import RequestAccepted, RequestAssigned
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_contracts.values import AreaPath, Location, TimeLimits
from civicgrid_runtime.testing import unique

from .conftest import eventually, settle, start_audit

ONE_SECOND = 1 / 3600


def received(rid: str, *, response_hours: float = ONE_SECOND) -> list[Envelope]:
    now = datetime.now(UTC)
    area = AreaPath(district="110105", street="110105002", community="110105002001", grid="110105002001003")
    return [
        Envelope.wrap(RequestReceived.starting_clocks(DEFAULT_CALENDAR, request_id=rid, service_code="S1", service_name="repair",
                                      time_limits=TimeLimits(response_hours=response_hours, resolution_hours=500,
                                                             calendar="calendar"),
                                      location=Location(), description="x", channel="hotline", received_at=now),
                      source="/civicgrid/intake"),
        Envelope.wrap(RequestAssigned(request_id=rid, area=area, assignee_id="staff-9", holder="A", reason="A",
                                      map_version=1, level="grid", assigned_at=now), source="/civicgrid/grid"),
    ]


async def escalations_on_kafka(infra, request_ids: set[str], since: datetime) -> list[Envelope]:
    """Every RequestEscalated message on the supervision topic for these requests (duplicates kept)."""
    c = AIOKafkaConsumer("audit.supervision.v1", bootstrap_servers=infra.kafka, group_id=None,
                         auto_offset_reset="earliest", enable_auto_commit=False)
    await c.start()
    out = []
    try:
        tps = c.assignment()
        while not tps:
            await asyncio.sleep(0.05)
            tps = c.assignment()
        found = await c.offsets_for_times({tp: int((since.timestamp() - 5) * 1000) for tp in tps})
        end = await c.end_offsets(list(tps))
        for tp in tps:
            if found.get(tp):
                c.seek(tp, found[tp].offset)
            else:
                c.seek(tp, end[tp])
        while any([await c.position(tp) < end[tp] for tp in tps]):
            batch = await c.getmany(timeout_ms=500)
            for recs in batch.values():
                for r in recs:
                    env = Envelope.from_kafka(r.value, r.headers)
                    if env.subject in request_ids:
                        out.append(env)
    finally:
        await c.stop()
    return out


async def test_escalation_climbs_two_levels_and_stops_when_accepted(infra, mongo):
    db = unique("audit_esc")
    svc = await start_audit(infra, database=db, group=unique("audit_grp"), repeat_hours=ONE_SECOND * 2)
    since = datetime.now(UTC)
    delays_before = REGISTRY.get_sample_value("civicgrid_escalation_delay_seconds_count") or 0
    try:
        await settle(svc)
        rid = unique("ESC")
        await svc.runtime.publisher.publish_many(received(rid))

        async def two_steps():
            doc = await svc.queries.request(rid)
            esc = [e for e in (doc or {}).get("state", {}).get("escalations", []) if e["clock"] == "response"]
            return esc if len(esc) >= 2 else None

        esc = await eventually(two_steps, timeout=40)
        esc.sort(key=lambda e: e["step"])
        assert [(e["step"], e["from_level"], e["to_level"]) for e in esc[:2]] == [
            (1, "grid", "community"), (2, "community", "street")]
        assert esc[0]["escalation_id"] == f"{rid}|response|1"
        # the escalation-lag alert's metric saw both
        assert REGISTRY.get_sample_value("civicgrid_escalation_delay_seconds_count") >= delays_before + 2
        # the supervisor's lists show it (district-wide scope)
        assert any(r["request_id"] == rid for r in await svc.queries.overdue(""))
        assert any(r["request_id"] == rid for r in await svc.queries.escalated("110105002"))
        assert not any(r["request_id"] == rid for r in await svc.queries.escalated("110105003"))
        # accepted: the response clock stops (it leaves the schedule of running clocks), no more
        # response escalations
        await svc.runtime.publisher.publish(Envelope.wrap(
            RequestAccepted(request_id=rid, staff_id="staff-9", accepted_at=datetime.now(UTC)),
            source="/civicgrid/grid"))

        async def stopped():
            d = await svc.runtime.db["requests_00"].find_one({"_id": rid})
            return not next(c for c in d["clocks"] if c["clock"] == "response")["active"]

        await eventually(stopped)
        count = len((await svc.queries.request(rid))["state"]["escalations"])
        await asyncio.sleep(2.5)
        assert len((await svc.queries.request(rid))["state"]["escalations"]) == count
        on_kafka = await escalations_on_kafka(infra, {rid}, since)
        assert len({e.id for e in on_kafka}) == count
    finally:
        await svc.runtime.stop()
        await mongo.drop_database(db)


async def test_no_double_escalation_with_two_replicas(infra, mongo):
    db, group = unique("audit_rep"), unique("audit_grp")
    # two replicas: same database, same consumer group, both scanning the same requests
    a = await start_audit(infra, database=db, group=group, repeat_hours=1000)
    b = await start_audit(infra, database=db, group=group, repeat_hours=1000)
    since = datetime.now(UTC)
    try:
        await settle(a, b)
        assert a.consumer._consumer.assignment() and b.consumer._consumer.assignment()
        rids = [unique("DUP") for _ in range(24)]
        await a.runtime.publisher.publish_many([e for rid in rids for e in received(rid)])

        async def all_escalated():  # decided, published and folded back into every request
            docs = await a.runtime.db["requests_00"].find({"_id": {"$in": rids}}).to_list(None)
            steps = [next(c for c in d["clocks"] if c["clock"] == "response")["step"] for d in docs]
            return steps == [2] * len(rids)

        await eventually(all_escalated, timeout=60)
        await asyncio.sleep(1.5)  # give a would-be double a chance to show up
        on_kafka = await escalations_on_kafka(infra, set(rids), since)
        response = [e for e in on_kafka if e.data.clock == "response"]
        ids = {e.data.escalation_id for e in response}
        assert sorted(ids) == sorted(f"{r}|response|1" for r in rids)
        # one decision per escalation: one event id each (the outbox may deliver a message twice --
        # at-least-once -- but always the same event, which every reader ignores the second time)
        assert len({e.id for e in response}) == len(rids), "an escalation was issued twice"
        assert a.scanner.escalated > 0 and b.scanner.escalated > 0, "both replicas should have taken a share"
        assert a.scanner.escalated + b.scanner.escalated == len(rids), "a replica decided an escalation twice"
    finally:
        await a.runtime.stop()
        await b.runtime.stop()
        await mongo.drop_database(db)


async def test_an_older_database_escalates_requests_whose_clocks_are_still_in_deadlines(infra, mongo):
    """A request stored by version 2 (its clocks in ``deadlines``) and not written since: audit
    rewrites it in today's shape when it starts (its clocks in it, through the upcaster), lists it
    overdue, escalates it once, and folds the escalation back; its old clock document says nothing
    any more and is deleted at the scanner's next look."""
    db = unique("audit_old")
    rid = unique("OLD")
    now = datetime.now(UTC)
    entries = [timeline.entry_from_envelope(e, topic="t", partition=0, offset=i)
               for i, e in enumerate(received(rid))]  # the response deadline one second after now
    state = timeline.fold(entries)
    await mongo[db]["requests_00"].insert_one({
        "_id": rid, "schema_version": 2, **request_summary(state), "state": state, "timeline": entries,
        "kpi_contribution": kpi.contributions(state, DEFAULT_CALENDAR), "kpi_pending": {}, "_v": 2, "_w": "old"})
    due = timeline.parse_time(state["response_due"])
    await mongo[db]["deadlines"].insert_one({
        "_id": f"{rid}|response", "schema_version": 1, "request_id": rid, "clock": "response", "department": None,
        "dispatch_id": None, "base_due": due, "active": True, "area_code": state["area_code"], "level": "grid",
        "seen": 0, "period_hours": ONE_SECOND, "business": False, "_rv": 2, "step": 1, "due_at": due,
        "esc_level": None})
    svc = await start_audit(infra, database=db, group=unique("audit_grp"), repeat_hours=1000)
    try:
        await settle(svc)

        async def listed_overdue():
            return any(r["request_id"] == rid for r in await svc.queries.overdue(""))

        await eventually(listed_overdue)

        async def folded_back():
            doc = await svc.runtime.db["requests_00"].find_one({"_id": rid, "escalation_count": 1})
            return doc if doc and doc["schema_version"] == CURRENT["requests"] else None

        doc = await eventually(folded_back, timeout=60)
        response = next(c for c in doc["clocks"] if c["clock"] == "response")
        assert (response["step"], response["level"]) == (2, "community")
        on_kafka = await escalations_on_kafka(infra, {rid}, now)
        assert {e.data.escalation_id for e in on_kafka} == {f"{rid}|response|1"}
        # the request in today's shape, its old clock document says nothing any more: gone at the next look
        svc.scanner.schedule(rid, datetime.now(UTC))
        await svc.scanner.reload()

        async def forgotten():
            await svc.scanner.scan()
            return await mongo[db]["deadlines"].count_documents({"request_id": rid}) == 0

        await eventually(forgotten)
    finally:
        await svc.runtime.stop()
        await mongo.drop_database(db)
