"""Replay: run a workload through the live service, rebuild into a fresh database from the topics,
compare: identical. Then drop the live database, rebuild it by replay, compare again.

The live service starts at the topics' end; the replays read exactly the offsets the live trail
holds (``bounds``: from its first record to its last, per log), so the test depends neither on how
much history other suites left on the broker nor on what they publish meanwhile (the topics are
shared)."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from civicgrid_audit.adapters.auditlog import log_name, record_id
from civicgrid_audit.adapters.replay import TargetNotEmpty, compare, replay_topics
from civicgrid_audit.bootstrap import CONSUMED_TOPICS
from civicgrid_audit.workload import workload
from civicgrid_runtime.testing import drop_quietly, unique

from .conftest import eventually, settle, start_audit


async def end_offsets(infra) -> dict[str, int]:
    c = AIOKafkaConsumer(bootstrap_servers=infra.kafka, group_id=None)
    await c.start()
    try:
        tps = [TopicPartition(t, p) for t in CONSUMED_TOPICS for p in (c.partitions_for_topic(t) or ())]
        if not tps:
            await c._client.force_metadata_update()
            tps = [TopicPartition(t, p) for t in CONSUMED_TOPICS for p in (c.partitions_for_topic(t) or ())]
        ends = await c.end_offsets(tps)
        return {log_name(tp.topic, tp.partition): off for tp, off in ends.items() if off > 0}
    finally:
        await c.stop()


async def test_replay_rebuilds_identical_projections(infra, mongo):
    live_db, rebuilt_db = unique("audit_live"), unique("audit_rebuilt")
    svc = await start_audit(infra, database=live_db, group=unique("audit_grp"), scan=False)
    try:
        await settle(svc)
        before = await end_offsets(infra)
        prefix = unique("RPL") + "-"
        events = [e for evs in workload(60, seed=11, prefix=prefix) for e in evs]
        await svc.runtime.publisher.publish_many(events)
        after = await end_offsets(infra)
        ends = {name: off for name, off in after.items() if off > before.get(name, 0)}

        async def caught_up():
            heads = {h["_id"]: h["last_offset"] async for h in svc.runtime.db["log_heads"].find({})}
            return all(heads.get(name, -1) >= off - 1 for name, off in ends.items())

        await eventually(caught_up, timeout=150, interval=0.5)

        async def all_projected():  # the log heads move first; the projections follow in the same batch
            return all([await svc.queries.request(f"{prefix}{i:08d}") for i in range(60)])

        await eventually(all_projected, timeout=60, interval=0.5)
    finally:
        await svc.runtime.stop()
    s = svc.settings
    live = mongo[live_db]
    bounds = {}  # per log, the offsets of its first and last record (the records are the truth, not the heads)
    for name in await live["log_records"].distinct("log"):
        first = await live["log_records"].find_one({"_id": record_id(name, 0)})
        last = await live["log_records"].find({"log": name}).sort("seq", -1).limit(1).to_list(None)
        bounds[name] = (first["offset"], last[0]["offset"] + 1)
    res = await replay_topics(bootstrap=infra.kafka, db=mongo[rebuilt_db], topic_names=list(CONSUMED_TOPICS),
                              calendar=svc.calendar, signing_key=s.signing_key.get_secret_value(), bounds=bounds)
    assert res["events"] >= len(events)
    report = await compare(mongo[live_db], mongo[rebuilt_db])
    assert report["identical"], report
    assert sum(v["live"] for k, v in report["collections"].items() if k.startswith("requests_")) >= 60
    assert report["collections"]["log_records"]["live"] >= len(events)
    for name in ("log_records", "requests_00", "checkpoints"):  # built after the load, as live has them
        built = {i["name"] async for i in await mongo[rebuilt_db][name].list_indexes()}
        assert built and built <= {i["name"] async for i in await mongo[live_db][name].list_indexes()}, name
    assert {"escalated", "area_deadline", "next_escalation"} <= {
        i["name"] async for i in await mongo[rebuilt_db]["requests_00"].list_indexes()}
    assert "deadlines" not in await mongo[rebuilt_db].list_collection_names()  # the clocks are in the requests
    # a replay that holds only a few requests in memory at a time writes the same documents: requests
    # seen again after their flush are read back and folded further
    small = unique("audit_small")
    await replay_topics(bootstrap=infra.kafka, db=mongo[small], topic_names=list(CONSUMED_TOPICS),
                        calendar=svc.calendar, signing_key=s.signing_key.get_secret_value(), bounds=bounds,
                        max_requests=7)
    in_steps = await compare(mongo[rebuilt_db], mongo[small])
    assert in_steps["identical"], in_steps
    # in two processes, each the single writer of half the partition numbers: the same documents
    parallel = unique("audit_parallel")
    res2 = await replay_topics(bootstrap=infra.kafka, db=mongo[parallel], topic_names=list(CONSUMED_TOPICS),
                               calendar=svc.calendar, signing_key=s.signing_key.get_secret_value(), bounds=bounds,
                               workers=2, mongodb_url=infra.mongodb)
    assert (res2["events"], res2["workers"]) == (res["events"], 2)
    in_two = await compare(mongo[rebuilt_db], mongo[parallel])
    assert in_two["identical"], in_two
    await drop_quietly(mongo, parallel)
    with pytest.raises(TargetNotEmpty):  # replay rebuilds into an empty database only
        await replay_topics(bootstrap=infra.kafka, db=mongo[small], topic_names=list(CONSUMED_TOPICS),
                            calendar=svc.calendar, signing_key=s.signing_key.get_secret_value(), bounds=bounds)
    await drop_quietly(mongo, small)
    # the live database lost: drop it, replay into it again, compare with the first rebuild
    await drop_quietly(mongo, live_db)
    await replay_topics(bootstrap=infra.kafka, db=mongo[live_db], topic_names=list(CONSUMED_TOPICS),
                        calendar=svc.calendar, signing_key=s.signing_key.get_secret_value(), bounds=bounds)
    again = await compare(mongo[rebuilt_db], mongo[live_db])
    assert again["identical"], again
    await drop_quietly(mongo, live_db)
    await drop_quietly(mongo, rebuilt_db)


async def test_compare_leaves_out_the_month_buckets_an_older_version_counted(mongo):
    """A live database of an older version holds a month bucket beside each day counter; nothing
    counts or reads those any more, and a rebuild has none: the projections are still identical."""
    live, rebuilt = unique("audit_old_live"), unique("audit_old_rebuilt")
    day = {"_id": "grid|g1|2026-11-02", "dim": "grid", "key": "g1", "day": "2026-11-02", "m": {"received": 2}}
    try:
        await mongo[live]["kpi_counters"].insert_many([
            dict(day), {"_id": "grid|g1|2026-11", "dim": "grid", "key": "g1", "day": "2026-11", "m": {"received": 2}}])
        await mongo[live]["kpi_counters_p3"].insert_one(
            {"_id": "grid|g2|2026-11|p3", "dim": "grid", "key": "g2", "day": "2026-11", "m": {"received": 1}})
        await mongo[rebuilt]["kpi_counters"].insert_one(dict(day))
        report = await compare(mongo[live], mongo[rebuilt])
        assert report["identical"], report
    finally:
        await drop_quietly(mongo, live)
        await drop_quietly(mongo, rebuilt)
