"""matching's part of ``make bench``.

1. Match latency: one request against 100,000 volunteers in the in-memory index (goal p99 < 5 ms),
   next to a raw baseline (one vectorised distance pass over the same arrays) and a naive
   pure-Python scan.
2. End to end: VolunteerRequested published to Kafka -> the service (consumer, index, store write
   with outbox) -> VolunteerOffered read back from Kafka (goal >= 1,000 matched requests/s), next to
   the raw Kafka round trip of the same number of messages.
3. Fairness: 10,000 simulated requests vs 2,000 equally qualified volunteers (goal Gini < 0.3,
   average distance within 20 % of nearest-first).

Run: KAFKA_BOOTSTRAP_SERVERS=... MONGODB_URL=... .venv/bin/python services/matching/bench/run.py
     [--quick | --smoke]   (--smoke: tiny numbers, to check that it runs)
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import simulation  # the bench's own fairness simulation (beside this file)

from civicgrid_contracts import Envelope, topics
from civicgrid_contracts.events.grid import VolunteerRequested
from civicgrid_contracts.values import Location
from civicgrid_matching.domain.index import MatchQuery, VolunteerIndex
from civicgrid_matching.domain.model import DAYS
from civicgrid_matching.domain.volunteer import Qualification, Volunteer
from civicgrid_runtime.testing import start_group_at_end, unique

SKILLS = ("elderly_home_care", "after_school_care", "disability_assistance", "small_repairs", "legal_advice",
          "hospital_escort")
ANCHOR = (39.90, 116.30)
PATTERNS = [
    [{"day": d, "start": "17:00", "end": "21:00"} for d in DAYS[:5]],
    [{"day": d, "start": "08:00", "end": "20:00"} for d in DAYS[5:]],
    [{"day": d, "start": "08:00", "end": "18:00"} for d in DAYS],
    [{"day": d, "start": "08:00", "end": "12:00"} for d in DAYS[:6]],
]


def bench_volunteers(n: int, rng: np.random.Generator, span_km: float) -> list[Volunteer]:
    lat = ANCHOR[0] + rng.random(n) * span_km / 111.2
    lon = ANCHOR[1] + rng.random(n) * span_km / 85.3
    far = datetime(2030, 1, 1, tzinfo=UTC)
    now = datetime.now(UTC).replace(microsecond=0)
    out = []
    for i in range(n):
        skills = [SKILLS[j] for j in rng.choice(len(SKILLS), size=int(rng.integers(1, 4)), replace=False)]
        v = Volunteer(id=f"bench-v{i:06d}", name=f"bench {i}", community=f"c-{i % 40:02d}", lat=float(lat[i]),
                      lon=float(lon[i]), created_at=now, updated_at=now, created_by="bench", skills=skills,
                      availability=PATTERNS[int(rng.integers(len(PATTERNS)))], on_duty=bool(rng.random() < .9),
                      weekly_hours_cap=10.0)
        if rng.random() < .5:
            v.qualifications["first_aid"] = Qualification("first_aid", "bench", far, far)
        out.append(v)
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(math.ceil(p / 100 * len(xs))) - 1)]


def bench_latency(n: int = 100_000, queries: int = 2_000) -> dict:
    rng = np.random.default_rng(1)
    index = VolunteerIndex(ZoneInfo("Asia/Shanghai"), capacity=n)
    t0 = time.perf_counter()
    for v in bench_volunteers(n, rng, span_km=30):
        index.upsert(v)
    build_s = time.perf_counter() - t0
    base = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # a Monday 09:00 local
    qs = []
    for _ in range(queries):
        qs.append(MatchQuery(lat=ANCHOR[0] + rng.random() * 30 / 111.2, lon=ANCHOR[1] + rng.random() * 30 / 85.3,
                             service_code=SKILLS[int(rng.integers(len(SKILLS)))],
                             start=base + timedelta(hours=int(rng.integers(0, 24 * 7))), hours=2.0,
                             required_qualifications=("first_aid",) if rng.random() < .3 else ()))
    for q in qs[:50]:
        index.match(q, limit=3)  # warm up
    lat_ms, cpu_ms, found = [], [], 0
    for q in qs:
        t, c = time.perf_counter(), time.thread_time()
        r = index.match(q, limit=3)
        lat_ms.append((time.perf_counter() - t) * 1000)
        cpu_ms.append((time.thread_time() - c) * 1000)
        found += bool(r.candidates)
    # raw baseline: one vectorised distance pass over all rows (the floor of any numpy matcher)
    raw = []
    for q in qs[:500]:
        t = time.perf_counter()
        dy = index.lat[:n] - q.lat
        dx = (index.lon[:n] - q.lon) * math.cos(math.radians(q.lat))
        int(np.argmin(dx * dx + dy * dy))
        raw.append((time.perf_counter() - t) * 1000)
    naive = []
    lats, lons = index.lat[:n].tolist(), index.lon[:n].tolist()
    skill = index.skills["elderly_home_care"][:n].tolist()
    for q in qs[:5]:
        t = time.perf_counter()
        best = min((((la - q.lat) ** 2 + (lo - q.lon) ** 2, i) for i, (la, lo, s) in enumerate(zip(lats, lons, skill, strict=True))
                    if s), default=None)
        naive.append((time.perf_counter() - t) * 1000)
        _ = best
    return {"volunteers": n, "queries": queries, "build_s": build_s, "p50": pct(lat_ms, 50), "p99": pct(lat_ms, 99), "cpu_p50": pct(cpu_ms, 50), "cpu_p99": pct(cpu_ms, 99),
            "max": max(lat_ms), "found_share": found / queries, "raw_p50": statistics.median(raw),
            "naive_p50": statistics.median(naive)}


async def bench_end_to_end(requests: int = 3_000, volunteers: int = 20_000) -> dict:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from civicgrid_matching.adapters.documents import volunteer_doc
    from civicgrid_matching.bootstrap import CONSUMED, build
    from civicgrid_matching.handlers import consumed, sync
    from civicgrid_matching.settings import MatchingSettings

    kafka = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    settings = MatchingSettings(database=unique("matching_bench"), consumer_group=unique("matching_bench"),
                                log_level="WARNING", consumer_max_batch=int(os.environ.get("MATCHING_BENCH_BATCH",
                                                                                           "2000")),
                                outbox_sweep_seconds=float(os.environ.get("MATCHING_BENCH_SWEEP", "1")))
    await start_group_at_end(kafka, settings.group_id, list(CONSUMED))
    service = await build(settings, jobs=False)
    m = service.matching
    rng = np.random.default_rng(2)
    docs = []
    for v in bench_volunteers(volunteers, rng, span_km=5):
        v.version = 1
        docs.append(volunteer_doc(v))
    now = datetime.now(UTC)
    for i in range(0, len(docs), 2000):  # bulk: registering 20,000 one by one would dominate the run
        await m.store.db.volunteers.insert_many(docs[i:i + 2000])
    await sync.refresh_index(m)
    out_topic = topics.VOLUNTEERS.name
    tail = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await tail.start()
    parts = tail.partitions_for_topic(out_topic) or set()
    if not parts:
        await tail._client.force_metadata_update()  # noqa: SLF001
        parts = tail.partitions_for_topic(out_topic) or set()
    tps = [TopicPartition(out_topic, p) for p in parts]
    tail.assign(tps)
    for tp, off in (await tail.end_offsets(tps)).items():
        tail.seek(tp, off)
    await service.runtime.start()
    for c in service.runtime.consumers:
        await c.wait_assigned()
    run = uuid.uuid4().hex[:8]
    base = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    envs = []
    for k in range(requests):
        p = VolunteerRequested(
            request_id=f"bench-{run}-{k}", service_code=SKILLS[k % 4],
            location=Location(lat=ANCHOR[0] + float(rng.random()) * 0.045, lon=ANCHOR[1] + float(rng.random()) * 0.059),
            # daytime visits (09:00-11:00 local, any day): what residents ask for, and what the demo
            # volunteers' availability covers, so the figure counts offers, not "nobody available"
            community="c-01", needed_from=base + timedelta(days=int(rng.integers(0, 7)) + 7 * (k % 50),
                                                           hours=int(rng.integers(0, 2))),
            needed_hours=1.0, requested_by="system", requested_at=now)
        envs.append(Envelope.wrap(p, source="/civicgrid/grid"))
    # the matching step alone for one big batch (store write + publish, no consumer in between)
    direct = [Envelope.wrap(VolunteerRequested(**{**e.data.model_dump(), "request_id": e.subject + "-direct"}),
                            source="/civicgrid/grid") for e in envs[:1000]]
    t0 = time.perf_counter()
    await consumed.match_new_requests(m, direct)
    direct_per_s = len(direct) / (time.perf_counter() - t0)
    wanted = {e.subject for e in envs}
    seen: set[str] = set()
    unmatched: set[str] = set()
    t0 = time.perf_counter()
    for i in range(0, len(envs), 500):
        await service.runtime.publisher.publish_many(envs[i:i + 500])
    publish_s = time.perf_counter() - t0
    deadline = time.monotonic() + 120
    while len(seen | unmatched) < len(wanted) and time.monotonic() < deadline:
        batch = await tail.getmany(timeout_ms=500)
        for recs in batch.values():
            for r in recs:
                key = r.key.decode()
                if key in wanted:
                    t = dict(r.headers).get("ce_type", b"").decode()
                    if t == "civicgrid.volunteer.offered":
                        seen.add(key)
                    elif t == "civicgrid.volunteer.unmatched":
                        unmatched.add(key)
    e2e_s = time.perf_counter() - t0
    await tail.stop()
    await service.runtime.stop()
    from pymongo import MongoClient

    MongoClient(settings.mongodb_url).drop_database(settings.database_name)
    raw = await raw_kafka_round_trip(kafka, requests)
    done = len(seen | unmatched)
    return {"requests": requests, "volunteers": volunteers, "offered": len(seen), "unmatched": len(unmatched),
            "seconds": e2e_s, "per_s": done / e2e_s, "direct_per_s": direct_per_s, "publish_s": publish_s, "raw_per_s": raw}


async def raw_kafka_round_trip(kafka: str, n: int) -> float:
    """Produce n CloudEvents to a scratch topic and consume them back: the bus's own ceiling here."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=12, replication_factor=1)])
    prod = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True, linger_ms=2,
                            compression_type="lz4")
    await prod.start()
    cons = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, auto_offset_reset="earliest")
    await cons.start()
    await asyncio.sleep(0.5)
    await cons._client.force_metadata_update()  # noqa: SLF001
    cons.assign([TopicPartition(topic, p) for p in range(12)])
    env = Envelope.wrap(VolunteerRequested(
        request_id="raw", service_code="x", location=Location(lat=39.9, lon=116.3), needed_from=datetime.now(UTC),
        needed_hours=1, requested_by="system", requested_at=datetime.now(UTC)), source="/bench")
    key, value, headers = env.to_kafka()
    t0 = time.perf_counter()
    futs = [await prod.send(topic, value=value, key=str(i).encode(), headers=headers) for i in range(n)]
    for f in futs:
        await f
    got = 0
    while got < n:
        for recs in (await cons.getmany(timeout_ms=500)).values():
            got += len(recs)
    s = time.perf_counter() - t0
    await prod.stop()
    await cons.stop()
    await admin.delete_topics([topic])
    await admin.close()
    return n / s


def main() -> None:
    quick = "--quick" in sys.argv
    smoke = "--smoke" in sys.argv  # tiny numbers: checks the bench runs, measures nothing
    print("matching bench: latency (in-memory index) ...", flush=True)
    lat = bench_latency(n=2_000 if smoke else 100_000, queries=50 if smoke else 500 if quick else 2_000)
    print("matching bench: end to end through Kafka and the store ...", flush=True)
    e2e = asyncio.run(bench_end_to_end(requests=100 if smoke else 1_000 if quick else 3_000,
                                       volunteers=500 if smoke else 20_000))
    print("matching bench: fairness simulation ...", flush=True)
    size = {"requests": 1_000, "volunteers": 200} if smoke else {}
    fair = simulation.run("fair", **size)
    near = simulation.run("nearest", **size)
    ratio = fair.mean_distance_m / near.mean_distance_m
    rows = [
        ("match latency p50, 1 request vs 100,000 volunteers", f"{lat['p50']:.3f} ms", "-",
         f"raw distance pass {lat['raw_p50']:.3f} ms; naive Python scan {lat['naive_p50']:.1f} ms"),
        ("match latency p99 (wall clock)", f"{lat['p99']:.3f} ms", "< 5 ms",
         f"{'PASS' if lat['p99'] < 5 else 'MISS'}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"),
        ("match latency p99 (thread CPU time)", f"{lat['cpu_p99']:.3f} ms", "< 5 ms",
         f"{'PASS' if lat['cpu_p99'] < 5 else 'MISS'}; p50 {lat['cpu_p50']:.3f} ms; not inflated by other processes"),
        ("index build (100,000 rows)", f"{lat['build_s']:.1f} s", "-", f"requests with a match {lat['found_share']:.0%}"),
        ("end to end matched requests/s (Kafka in -> offer out)", f"{e2e['per_s']:.0f} /s", ">= 1,000 /s",
         f"{'PASS' if e2e['per_s'] >= 1000 else 'MISS'}; {e2e['requests']} requests, {e2e['offered']} offered, "
         f"{e2e['unmatched']} unmatched, {e2e['seconds']:.2f} s; raw Kafka round trip {e2e['raw_per_s']:.0f} /s"),
        ("matching step alone, one batch of 1,000 (store + publish)", f"{e2e['direct_per_s']:.0f} /s", "-",
         "same code as the consumer's fast path, without the consumer loop"),
        ("fairness: Gini of hours (10,000 req / 2,000 vol)", f"{fair.gini_hours:.3f}", "< 0.3",
         f"{'PASS' if fair.gini_hours < .3 else 'MISS'}; nearest-first Gini {near.gini_hours:.3f}"),
        ("fairness: mean distance vs nearest-first", f"{fair.mean_distance_m:.1f} m ({ratio - 1:+.1%})", "<= +20 %",
         f"{'PASS' if ratio <= 1.2 else 'MISS'}; nearest-first {near.mean_distance_m:.1f} m"),
        ("fairness: volunteers who served at least once", f"{fair.served_share:.1%}", "-",
         f"nearest-first {near.served_share:.1%}; max hours {fair.max_hours:.0f} vs {near.max_hours:.0f}"),
    ]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    print()
    print(f"{'figure':<{w[0]}}  {'measured':<{w[1]}}  {'goal':<{w[2]}}  notes")
    print("-" * (sum(w) + 40))
    for r in rows:
        print(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}")


if __name__ == "__main__":
    main()
