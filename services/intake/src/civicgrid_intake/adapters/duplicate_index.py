"""Where likely duplicates are looked for: the requests of the duplicate window by service and H3
cell, in memory, fed by intake's own topic.

Every replica reads all of ``intake.requests`` with a group-less consumer (every partition, from
the start of the window) and keeps, per request with a location, its service, cell, time and
point, and whether it is merged into another one. A replica's own submissions are added as they
are stored; another replica's as soon as their ``RequestReceived`` is on the topic (the relay
publishes right after the write, and an idle fetch answers at the first byte). Candidates are the
requests of the few dozen small cells around the point, never a scan; the handler then
reads their state fresh from the store, so a resolved or closed one is never followed.

Before, the buckets were store documents: an upsert per submission and a read on every cache miss
were half of the store's work per submission, and an upsert into a growing document is the
dearest write FerretDB does. Memory: about 530-630 bytes a request (tracemalloc over 100,000;
530 without the request id's string), so a 72-hour window at a megacity's 100,000 requests a day
is up to 190 MB per replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import h3.api.basic_int as h3
from aiokafka import AIOKafkaConsumer, TopicPartition

from civicgrid_contracts import Envelope, MalformedEvent
from civicgrid_contracts.events.intake import RequestMerged, RequestReceived, RequestUnmerged
from civicgrid_runtime.bus import header, kafka_client_options
from civicgrid_runtime.geo import EARTH_RADIUS_M, haversine_m
from civicgrid_runtime.logging import get_logger

log = get_logger("civicgrid.intake.duplicates")

FED_TYPES = frozenset({RequestReceived.event_type, RequestMerged.event_type, RequestUnmerged.event_type})


def resolution_for(distance_m: float) -> int:
    """The finest H3 resolution (5-12) whose cells' edges are at least half ``distance_m``: a search
    then looks in a few dozen small cells, whatever the density around it. (Edges of the full
    distance meant cells of several times the searched area; at a dense bench district's 100,000
    requests a search took twice as long.)"""
    for res in range(12, 4, -1):
        if h3.average_hexagon_edge_length(res, unit="m") >= distance_m / 2:
            return res
    return 5


def ring_for(distance_m: float, res: int) -> int:
    """k of the k-ring around a point's cell that holds every point within ``distance_m`` of it.
    A point is at most an edge from its cell's centre, and cells k+1 steps away have centres at
    least 1.5 edges per step away; edges vary by region, hence the 10% margins."""
    edge = h3.average_hexagon_edge_length(res, unit="m")
    return max(1, math.ceil((distance_m + 2.2 * edge) / (1.35 * edge)))


@dataclass(slots=True)
class Indexed:
    service_code: str
    cell: int
    at: float  # received at, POSIX time: compared for every entry of a search
    lat: float
    lon: float
    merged: bool


class DuplicateIndex:
    """The window's requests by (service, H3 cell at ``res``, chosen for ``distance_m``). Adding the
    same request again changes nothing but its merged flag, so a replica's own write and its event
    on the topic agree."""

    def __init__(self, *, window: timedelta, distance_m: float = 50.0) -> None:
        self.window = window
        self.distance_m = distance_m
        self.res = resolution_for(distance_m)
        self._ring = ring_for(distance_m, self.res)
        #: how far (degrees) a point within ``distance_m`` can be in latitude; longitude's is this
        #: over the cosine of the latitude (a box test before the haversine)
        self._dlat = math.degrees(distance_m / EARTH_RADIUS_M) * 1.01
        self._requests: dict[str, Indexed] = {}
        self._cells: dict[tuple[str, int], dict[str, Indexed]] = {}
        #: the cells around a cell: the same few thousand cells of a district come up again and again
        self._around = functools.lru_cache(maxsize=1 << 16)(lambda cell: h3.grid_disk(cell, self._ring))
        #: (time, request id) in the order added: what leaves the window first is at the left
        #: (a catch-up adds partitions interleaved, so this is only roughly ordered: a request may
        #: stay a little past the window, and candidates are cut at the window anyway)
        self._order: deque[tuple[float, str]] = deque()

    def __len__(self) -> int:
        return len(self._requests)

    def add(self, request_id: str, *, service_code: str, lat: float, lon: float, at: datetime,
            merged: bool = False) -> None:
        if request_id in self._requests:
            self.set_merged(request_id, merged)
            return
        ts = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
        cell = h3.latlng_to_cell(lat, lon, self.res)
        entry = self._requests[request_id] = Indexed(service_code, cell, ts, lat, lon, merged)
        self._cells.setdefault((service_code, cell), {})[request_id] = entry
        self._order.append((ts, request_id))

    def knows(self, request_id: str) -> bool:
        return request_id in self._requests

    def set_merged(self, request_id: str, merged: bool) -> None:
        known = self._requests.get(request_id)
        if known is not None:
            known.merged = merged

    def prune(self, now: datetime) -> None:
        oldest = (now - self.window).timestamp()
        while self._order and self._order[0][0] < oldest:
            _, rid = self._order.popleft()
            gone = self._requests.pop(rid, None)
            if gone is not None:
                key = (gone.service_code, gone.cell)
                members = self._cells.get(key)
                if members is not None:
                    members.pop(rid, None)
                    if not members:
                        del self._cells[key]

    def candidates(self, service_code: str, lat: float, lon: float, *,
                   now: datetime) -> list[tuple[float, datetime, str]]:
        """(distance, received at, request id) of the unmerged requests of the service within
        ``distance_m`` and the window, nearest first."""
        self.prune(now)
        oldest = (now - self.window).timestamp()
        distance_m = self.distance_m
        dlat = self._dlat
        # beyond 80 degrees (no district there) the box is not worth its cosine: latitude alone
        dlon = dlat / math.cos(math.radians(abs(lat) + dlat)) if abs(lat) < 80 else 360.0
        cells = self._cells
        out = []
        for cell in self._around(h3.latlng_to_cell(lat, lon, self.res)):
            members = cells.get((service_code, cell))
            if not members:
                continue
            for rid, e in members.items():
                if e.merged or e.at < oldest or abs(e.lat - lat) > dlat or abs(e.lon - lon) > dlon:
                    continue
                d = haversine_m(lat, lon, e.lat, e.lon)
                if d <= distance_m:
                    out.append((d, datetime.fromtimestamp(e.at, UTC), rid))
        out.sort()
        return out

    def apply(self, env: Envelope) -> None:
        """One event of intake's topic: a received request with a point is indexed (merged if it
        was recognised as a duplicate); merged and unmerged set the flag."""
        data = env.data
        if isinstance(data, RequestReceived):
            loc = data.location
            if loc.lat is not None and loc.lon is not None:
                self.add(data.request_id, service_code=data.service_code, lat=loc.lat, lon=loc.lon,
                         at=data.received_at, merged=data.duplicate_of is not None)
        elif isinstance(data, RequestMerged):
            self.set_merged(data.request_id, True)
        elif isinstance(data, RequestUnmerged):
            self.set_merged(data.request_id, False)


class DuplicateFeed:
    """Keeps a ``DuplicateIndex`` to intake's topic: every partition, from the start of the window,
    without a consumer group (each replica reads everything; nothing is committed: a restart reads
    the window again)."""

    def __init__(self, index: DuplicateIndex, *, bootstrap_servers: str, topic: str) -> None:
        self.index = index
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self.caught_up = asyncio.Event()
        self.applied = 0

    async def start(self, *, catch_up_seconds: float = 60.0) -> None:
        """Start reading; return once the window read so far reached the topic's end at start (or
        after ``catch_up_seconds``: submissions are taken meanwhile, and a duplicate of a request
        not read yet is taken for a new request)."""
        # another replica's request shows within ~0.2 s; a fetch per event would cost the broker and
        # this process more than the events
        c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None, enable_auto_commit=False,
                             **kafka_client_options(),
                             fetch_min_bytes=64 * 1024, fetch_max_wait_ms=200, max_poll_records=5000)
        await c.start()
        self._consumer = c
        parts = c.partitions_for_topic(self.topic)
        if not parts:
            await c._client.force_metadata_update()  # noqa: SLF001 - first metadata fetch
            parts = c.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        c.assign(tps)
        since = int((datetime.now(UTC) - self.index.window).timestamp() * 1000)
        found = await c.offsets_for_times({tp: since for tp in tps})
        end = await c.end_offsets(tps)
        for tp in tps:
            c.seek(tp, found[tp].offset if found.get(tp) is not None else end[tp])
        self._task = asyncio.create_task(self._run(end), name="intake-duplicate-feed")
        self._task.add_done_callback(self._ended)
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(self.caught_up.wait(), timeout=catch_up_seconds)
            log.info("duplicate index caught up", requests=len(self.index), events=self.applied,
                     seconds=round(time.monotonic() - t0, 2))
        except TimeoutError:
            log.warning("duplicate index still catching up; serving meanwhile", requests=len(self.index))

    @staticmethod
    def _ended(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("duplicate feed stopped: new requests of other replicas are no longer indexed",
                      error=repr(task.exception()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self, end: dict[TopicPartition, int]) -> None:
        c = self._consumer
        assert c is not None
        behind = {tp for tp, offset in end.items() if await c.position(tp) < offset}
        if not behind:
            self.caught_up.set()
        while True:
            try:
                fetched = await c.getmany(timeout_ms=500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the broker away: the consumer reconnects
                log.warning("duplicate feed fetch failed; retrying", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for records in fetched.values():
                self._apply(records)
            if behind:
                for tp in list(behind):
                    if await c.position(tp) >= end[tp]:
                        behind.discard(tp)
                if not behind:
                    self.caught_up.set()

    def _apply(self, records: Iterable) -> None:
        for r in records:
            kind = header(r.headers or (), "ce_type")
            if kind not in FED_TYPES:
                continue
            if kind == RequestReceived.event_type and r.key is not None and self.index.knows(r.key.decode()):
                continue  # this replica's own request (indexed as it was stored), or read twice
            try:
                self.index.apply(Envelope.from_kafka(r.value, r.headers))
            except MalformedEvent as exc:  # not ours to dead-letter: intake's own consumers see it too
                log.warning("unreadable event on intake's topic", offset=r.offset, partition=r.partition,
                            error=str(exc))
                continue
            self.applied += 1
