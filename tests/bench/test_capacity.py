"""The capacity plan's arithmetic on a small fixed costs file (no benchmark run, no infrastructure)."""

from __future__ import annotations

import json
import math

import pytest

from bench import capacity
from bench.costs import TopicTally

COSTS = {
    "run": {"at": "2026-12-02T09:00:00+00:00", "commit": "abc1234", "requests": 1000, "seconds": 60.0,
            "bench": "bench/pipeline.py", "kafka": "127.0.0.1:19092", "store": "mongodb://127.0.0.1:27027/"},
    "cpu_seconds_per_request": {"intake": 0.004, "grid": 0.05, "matching": 0.002, "audit": 0.003, "kafka": 0.01},
    "store": {
        "intake": {"docs_read_per_request": 1.0, "docs_written_per_request": 2.0, "commands_per_request": 3.0,
                   "bytes_per_request": 3000},
        "grid": {"docs_read_per_request": 4.0, "docs_written_per_request": 3.0, "commands_per_request": 5.0,
                 "bytes_per_request": 2000},
    },
    "topics": {"intake.requests.v1": {"events_per_request": 1.0, "bytes_per_event": 1000},
               "grid.assignments.v1": {"events_per_request": 2.0, "bytes_per_event": 500}},
    "events_per_request": 3.0,
}
PEAK = 21_400_000 / (365 * 24 * 3600) * 10  # 6.79 requests/s at Beijing's peak hour


def test_beijing_volume_at_ten_times_the_average_rate_needs_the_minimum_of_everything():
    p = capacity.plan(COSTS, "Beijing", 21_400_000)
    assert p.peak_per_second == pytest.approx(PEAK)
    assert p.cores_at_peak["grid"] == pytest.approx(PEAK * 0.05)  # 0.34 of a core
    assert p.replicas == {"intake": 2, "grid": 2, "matching": 2, "audit": 2}  # at least two of each
    assert p.partitions == 12  # the registry's
    assert p.kafka_events_per_second == pytest.approx(PEAK * 3)
    assert p.kafka_in_bytes_per_second == pytest.approx(PEAK * 2000)
    assert p.kafka_out_bytes_per_second == pytest.approx(PEAK * 2000 * 4)  # four consumer groups
    assert p.kafka_bytes_per_year == pytest.approx(21_400_000 * 2000 * 3)  # 128.4 GB with three replicas
    assert p.store_writes_per_second == pytest.approx(PEAK * 5)
    assert p.store_reads_per_second == pytest.approx(PEAK * 5)
    assert p.store_bytes_per_year == pytest.approx(21_400_000 * 5000 * 3)  # 321 GB on three members


def test_ten_times_the_volume_scales_the_busy_service_and_partitions_follow_the_largest_group():
    p = capacity.plan(COSTS, "x10", 214_000_000)
    assert p.replicas["grid"] == math.ceil(10 * PEAK * 0.05 / 0.6) == 6
    assert p.replicas["intake"] == 2
    huge = capacity.plan(COSTS, "x100", 2_140_000_000)
    assert huge.replicas["grid"] == 57 and huge.partitions == 57  # a member per partition at most


def test_the_document_names_its_run_and_shows_both_loads(tmp_path):
    source = tmp_path / "costs.json"
    source.write_text(json.dumps(COSTS))
    out = tmp_path / "capacity.md"
    assert capacity.main([str(source), "--out", str(out)]) == 0
    text = out.read_text()
    assert "commit `abc1234`" in text and "1,000 requests" in text and "2026-12-02T09:00:00+00:00" in text
    assert "| requests a year | 21,400,000 | 214,000,000 |" in text
    assert "| grid: replicas (cores busy at peak) | 2 (0.34) | 6 (3.39) |" in text
    assert "| Kafka: storage a year (x3 replicas, kept forever) | 128.4 GB | 1.3 TB |" in text
    assert "| MongoDB: storage a year (x3 members) | 321.0 GB | 3.2 TB |" in text
    assert "## Assumptions and where they come from" in text


def test_topic_tally_counts_each_event_once_per_request():
    tally = TopicTally()
    headers = [("ce_id", b"e1"), ("ce_type", b"t")]
    tally.add("a.v1", b"r1", b"x" * 10, headers)
    tally.add("a.v1", b"r1", b"x" * 10, headers)  # published again (another platform, a redelivery)
    tally.add("a.v1", b"r1", b"x" * 20, [("ce_id", b"e2")])
    tally.add("a.v1", b"other", b"x", [("ce_id", b"e3")])  # not a request of this run
    assert tally.per_request({"r1"}) == {"a.v1": {"events_per_request": 2.0, "bytes_per_event": (27 + 29) // 2}}
