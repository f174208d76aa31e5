"""The deadline scanner: finds due clocks in the request documents, decides each escalation once
with a claim that carries its event, and publishes it.

- a request's clocks live in its document (``clocks``; domain/clocks.py), written by the projection
  only; ``next_escalation_at`` (indexed) is when the scanner next has something to decide there.
  Due requests come from an in-memory schedule (a heap of due times): the projection of this
  process schedules every request it writes, and the schedule is reloaded from the store at start
  and every ``reload_seconds`` with what falls due before the next reload (so requests written by
  another replica, e.g. before a rebalance, are picked up). Each due request is re-read by ``_id``
  before anything is decided: the store stays the truth, the heap only says when to look;

- decision = *insert* of ``escalation_claims/{escalation_id}`` (``<clock id>|<step>``) with the
  ``RequestEscalated`` event kept in it (the runtime's ``insert_caused``: one write), then the
  publish, then ``done``. The unique ``_id`` lets exactly one replica decide each (clock, step); the
  event id derives from the escalation id, so a publish repeated after a crash is the *same* event,
  which every reader ignores. A claim not ``done`` after its lease (``AUDIT_LEASE_SECONDS``: its
  holder crashed before the publish) is taken over by an update guarded by the holder and lease
  it read (one replica wins), and its kept event published again;

- the clock moves on when the escalation comes back through the bus and is folded into the request
  (its step, level and next due time follow from the state): until then the claim, found ``done``,
  says the step is decided, and the request is looked at again after a lease. The scanner never
  writes the request document, so no concurrency between it and the projection. A request accepted
  while the scanner decides is escalated only if the projection had not folded the acceptance yet
  when the scanner read it -- as when the acceptance is still on its way through the bus;

- it repeats: the next due time is one more period while the clock stays late, one level further up
  the chain each time, up to the district.

An older database keeps the clocks of requests not written since in ``deadlines`` (version 2 of a
request); the reload reads its running clocks too, and the request, read through its upcaster, has
them again (``documents._request_before_clocks``). Once the request is written in today's shape its
``deadlines`` documents say nothing any more and are deleted (nothing writes them since).
"""

from __future__ import annotations

import heapq
import os
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from civicgrid_audit.adapters.documents import CLAIMS, CURRENT, DEADLINES, REQUESTS, stamped, upcast
from civicgrid_audit.domain import clocks, timeline
from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import working_hours_between
from civicgrid_contracts.envelope import derived_event_id
from civicgrid_contracts.events.audit import RequestEscalated
from civicgrid_runtime.calendar import CalendarSource
from civicgrid_runtime.logging import get_logger
from civicgrid_runtime.metrics import ESCALATION_BACKLOG_SECONDS, ESCALATION_DELAY
from civicgrid_runtime.store import CAUSED, OutboxRelay, find_by_ids
from civicgrid_runtime.tracing import stamped as traced

log = get_logger("civicgrid.audit.scanner")


class DeadlineScanner:
    def __init__(self, requests: AsyncCollection, relay: OutboxRelay, calendar: CalendarSource, *,
                 source: str, lease_seconds: float = 30.0, instance: str | None = None,
                 reload_seconds: float = 60.0) -> None:
        self.requests = requests
        self.claims = requests.database[CLAIMS]
        self.legacy_deadlines = requests.database[DEADLINES]
        self.relay = relay
        self.calendar = calendar
        self.source = source
        self.lease = timedelta(seconds=lease_seconds)
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.escalated = 0
        self.reload_seconds = reload_seconds
        self._heap: list[tuple[datetime, str]] = []
        self._loaded_at: float | None = None
        #: requests scheduled from an older database's ``deadlines``
        self._legacy: set[str] = set()

    async def ensure_indexes(self) -> None:
        await self.claims.create_index([("done", 1)], name="done")

    def schedule(self, request_id: str, due_at: datetime) -> None:
        """Look at this request again at ``due_at`` (called by the projection for every request it
        writes with a clock to escalate)."""
        heapq.heappush(self._heap, (timeline.parse_time(due_at), request_id))

    async def reload(self, now: datetime | None = None) -> None:
        """The schedule from the store: requests with an escalation due before the next reload (later
        ones come with the reload before them, or from the projection when written)."""
        horizon = (now or datetime.now(UTC)) + timedelta(seconds=2 * self.reload_seconds)
        docs = await self.requests.find({"next_escalation_at": {"$lte": horizon}},
                                        {"next_escalation_at": 1}).to_list(None)
        self._heap = [(timeline.parse_time(d["next_escalation_at"]), d["_id"]) for d in docs]
        # clocks of requests stored before version 3, not written since (read through the upcaster)
        legacy = await self.legacy_deadlines.find({"active": True, "due_at": {"$lte": horizon}},
                                                  {"request_id": 1, "due_at": 1}).to_list(None)
        self._heap += [(timeline.parse_time(d["due_at"]), d["request_id"]) for d in legacy]
        self._legacy = {d["request_id"] for d in legacy}
        heapq.heapify(self._heap)
        self._loaded_at = time.monotonic()

    async def scan(self, *, now: datetime | None = None, limit: int = 500) -> int:
        """Escalate every due clock of up to ``limit`` due requests; returns how many escalations this
        replica decided."""
        t = now or datetime.now(UTC)
        oldest_due = self._heap[0][0] if self._heap else t
        ESCALATION_BACKLOG_SECONDS.set(max(0.0, (t - oldest_due).total_seconds()))
        if self._loaded_at is None or time.monotonic() - self._loaded_at > self.reload_seconds:
            await self.reload(t)
        ids: list[str] = []
        while self._heap and self._heap[0][0] <= t and len(ids) < limit:
            _, rid = heapq.heappop(self._heap)
            if rid not in ids:
                ids.append(rid)
        if not ids:
            return 0
        due: list[tuple[dict[str, Any], dict[str, Any]]] = []
        found = await find_by_ids(self.requests, ids)
        await self._forget_legacy_clocks([rid for rid, doc in found.items() if rid in self._legacy
                                          and doc.get("schema_version") == CURRENT[REQUESTS]])
        for rid, doc in found.items():
            doc = upcast(self.requests.name, doc)
            late = [c for c in doc["clocks"] if c["active"] and c["due_at"] is not None
                    and timeline.parse_time(c["due_at"]) <= t]
            due += [(doc, c) for c in late]
            if not late and doc.get("next_escalation_at") is not None:  # moved on meanwhile: look again then
                self.schedule(rid, doc["next_escalation_at"])
        claims = await find_by_ids(self.claims, [escalation_id(c) for _, c in due])
        done = 0
        for doc, clock in due:
            if await self._decide(doc, clock, claims.get(escalation_id(clock)), t):
                done += 1
        self.escalated += done
        return done

    async def _forget_legacy_clocks(self, request_ids: list[str]) -> None:
        """Delete the ``deadlines`` documents of requests written in today's shape since (but not one
        whose outbox still waits for the relay)."""
        if request_ids:
            await self.legacy_deadlines.delete_many({"request_id": {"$in": request_ids},
                                                     "_outbox_pending": {"$exists": False}})
            self._legacy -= set(request_ids)

    def _escalation(self, doc: dict[str, Any], clock: dict[str, Any], now: datetime) -> Envelope:
        due = timeline.parse_time(clock["due_at"])
        payload = RequestEscalated(
            request_id=doc["_id"], escalation_id=escalation_id(clock), clock=clock["clock"], step=clock["step"],
            from_level=clock["level"], to_level=timeline.next_level(clock["level"]), due_at=due, escalated_at=now,
            overdue_hours=round(working_hours_between(timeline.parse_time(clock["base_due"]), now,
                                                      clocks.kind_of(clock), self.calendar.calendar), 3),
            department=clock.get("department"),
        )
        return Envelope.wrap(payload, source=self.source, event_id=derived_event_id(payload.escalation_id,
                                                                                    payload.event_type),
                             correlation_id=doc["_id"], time=now)

    async def _decide(self, doc: dict[str, Any], clock: dict[str, Any], claim: dict[str, Any] | None,
                      now: datetime) -> bool:
        """Decide one due step: claim it with its event (or take over a claim whose holder died), then
        publish. Returns whether this replica decided it."""
        eid = escalation_id(clock)
        self.schedule(doc["_id"], now + self.lease)  # until the escalation is folded back (or a holder died)
        claim = upcast(CLAIMS, claim)
        if claim is None:
            event = self._escalation(doc, clock, now)
            new = stamped(CLAIMS, {"_id": eid, "by": self.instance, "at": now, "until": now + self.lease,
                                   "done": False})
            if eid not in await self.relay.insert_caused(self.claims, [(new, [event])]):
                return False  # another replica claimed it first (its event was published again: harmless)
        elif claim["done"] or timeline.parse_time(claim["until"]) > now:
            return False  # decided: its event comes back through the bus (or its holder is on it)
        elif not await self._take_over(claim, self._escalation(doc, clock, now), now):
            return False
        else:
            # publish what the claim keeps (insert_caused finds the claim and publishes its events)
            await self.relay.insert_caused(self.claims, [({"_id": eid}, [])])
        await self.claims.update_one({"_id": eid}, {"$set": {"done": True}})
        ESCALATION_DELAY.observe(max(0.0, (now - timeline.parse_time(clock["due_at"])).total_seconds()))
        log.info("escalated", request_id=doc["_id"], clock=clock["clock"], step=clock["step"],
                 to_level=timeline.next_level(clock["level"]))
        return True

    async def _take_over(self, claim: dict[str, Any], event: Envelope, now: datetime) -> bool:
        """Take a claim whose holder's lease ran out (it crashed before publishing), guarded by the
        holder and lease read: one replica wins. A claim of version 1 kept no event: this one goes in."""
        fields: dict[str, Any] = {"by": self.instance, "until": now + self.lease}
        if not claim.get(CAUSED):
            fields[CAUSED] = [traced(event).to_document(with_trace=True)]
        taken = await self.claims.update_one({"_id": claim["_id"], "by": claim["by"], "until": claim["until"],
                                              "done": False}, {"$set": stamped(CLAIMS, fields)})
        if taken.modified_count == 0:
            return False
        log.warning("took over an expired escalation claim", escalation_id=claim["_id"], previous=claim["by"])
        return True


def escalation_id(clock: dict[str, Any]) -> str:
    """``<request>|<clock>[|<dispatch>|<department>]|<step>``: one per step of a clock."""
    return f"{clock['id']}|{clock['step']}"
