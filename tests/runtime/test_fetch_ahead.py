"""The consumer's fetch-ahead buffer (unit tests, no broker): what it hands the handler, in which
order, and what a rebalance drops. Delivery against the real broker is in test_delivery.py."""

from __future__ import annotations

from aiokafka import ConsumerRecord, TopicPartition

from civicgrid_runtime.bus import EventConsumer, Fetched
from tests.support.events import received

P0, P1, P2 = (TopicPartition("t", p) for p in range(3))


def record(tp: TopicPartition, offset: int) -> ConsumerRecord:
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"v", None, 1, 1, [])


def consumer(max_batch: int) -> EventConsumer:
    async def handler(batch):  # never called here
        raise AssertionError

    return EventConsumer(bootstrap_servers="127.0.0.1:1", group_id="g", topic_names=["t"], handler=handler,
                         publisher=None, max_batch=max_batch)  # type: ignore[arg-type]


def fetched(c: EventConsumer, tp: TopicPartition, offsets: range) -> None:
    c._ahead.setdefault(tp, []).extend(Fetched.decode(record(tp, o)) for o in offsets)
    c._ahead_count += len(offsets)
    c._has_ahead.set()


def offsets(batch: dict[TopicPartition, list[Fetched]]) -> dict[int, list[int]]:
    return {tp.partition: [r.offset for r in recs] for tp, recs in batch.items()}


async def test_takes_at_most_a_batch_and_keeps_each_partitions_order():
    c = consumer(max_batch=5)
    fetched(c, P0, range(0, 4))
    fetched(c, P1, range(10, 14))
    first = c._take_fetched()
    assert offsets(first) == {0: [0, 1, 2, 3], 1: [10]}
    assert c._ahead_count == 3 and c._has_ahead.is_set()
    fetched(c, P1, range(14, 16))  # fetched meanwhile: after what is left of the partition
    assert offsets(c._take_fetched()) == {1: [11, 12, 13, 14, 15]}
    assert c._ahead_count == 0 and not c._has_ahead.is_set()


async def test_stops_fetching_when_full_and_resumes_when_taken():
    c = consumer(max_batch=2)  # room for 2 batches ahead
    fetched(c, P0, range(0, 4))
    c._has_room.clear()  # what the fetch loop does at the limit
    c._take_fetched()
    assert c._has_room.is_set()


async def test_a_rebalance_drops_only_the_revoked_partitions():
    c = consumer(max_batch=10)
    fetched(c, P0, range(0, 3))
    fetched(c, P1, range(0, 2))
    fetched(c, P2, range(0, 1))
    c.forget_fetched([P0, P2])
    assert offsets(c._take_fetched()) == {1: [0, 1]}
    c.forget_fetched([P1])
    assert c._ahead_count == 0 and not c._has_ahead.is_set() and c._has_room.is_set()


async def test_not_alive_once_a_loop_ended_by_itself():
    import asyncio

    c = consumer(max_batch=10)
    assert c.alive  # not started yet

    async def fail():
        raise RuntimeError("a bug")

    c._fetch_task = asyncio.create_task(fail())
    c._fetch_task.add_done_callback(c._fetch_ended)
    await asyncio.gather(c._fetch_task, return_exceptions=True)
    assert not c.alive and not c.healthy


async def test_commits_are_paced_and_flushed_at_once_when_asked():
    import asyncio
    import itertools
    import time

    c = EventConsumer(bootstrap_servers="127.0.0.1:1", group_id="g", topic_names=["t"], handler=None,
                      publisher=None, commit_interval_seconds=0.2)  # type: ignore[arg-type]
    commits: list[tuple[float, dict]] = []

    async def commit(offsets):
        commits.append((time.monotonic(), dict(offsets)))

    c._commit = commit
    c.lag = lambda: {}
    began = time.monotonic()
    for offset in range(1, 21):  # twenty batches handled within ~0.1 s (longer on a loaded machine)
        c._commit_later({P0: offset})
        await asyncio.sleep(0.005)
    took = time.monotonic() - began
    await asyncio.sleep(0.3)
    # the first at once, the rest paced: at most one commit per interval the loop lasted, plus the last
    assert 2 <= len(commits) <= 2 + int(took / 0.2) and commits[-1][1] == {P0: 20}
    assert all(b[0] - a[0] >= 0.19 for a, b in itertools.pairwise(commits))
    c._commit_later({P0: 21, P1: 3})
    t = time.monotonic()
    await c.flush_commits()  # stop or revocation: no waiting for the interval
    assert time.monotonic() - t < 0.1 and commits[-1][1] == {P0: 21, P1: 3}


def test_records_are_decoded_as_they_are_fetched_and_a_malformed_one_keeps_its_reason():
    key, value, headers = received("r-1").to_kafka()
    good = Fetched.decode(ConsumerRecord("t", 1, 7, 0, 0, key, value, None, 1, 1, headers))
    assert good.delivery is not None and good.malformed == ""
    assert (good.delivery.envelope.subject, good.delivery.partition, good.delivery.offset) == ("r-1", 1, 7)

    bad = Fetched.decode(record(P0, 8))  # no CloudEvents headers
    assert bad.delivery is None and bad.offset == 8 and "ce_id" in bad.malformed
