"""The deadline scanner: finds due clocks, claims each one atomically with a lease, and publishes
the escalation through the deadline document's outbox.

- due clocks come from an in-memory schedule (a heap of due times): the projection of this process
  schedules every clock it writes, the scanner every clock it moves on, and the whole schedule is
  reloaded from the store at start and every ``reload_seconds`` (so clocks written by another
  replica, e.g. before a rebalance, are picked up). Each due entry is re-read from the store by
  ``_id`` before anything is decided: the store stays the truth, the heap only says when to look.
  (A range query on ``due_at`` every half second scanned the whole collection on FerretDB v1.)

- claim = *insert* of ``escalation_claims/{escalation_id}``: the unique ``_id`` lets exactly one
  replica win each (clock, step). A claim carries a lease: if its holder crashes before finishing,
  another replica takes over after the lease, by an update guarded by the holder and lease it read
  (one wins). Both are the runtime's one concurrency rule (ADR 0601): unique-key claims and
  guarded single-document updates, no locks;
- the escalation is deterministic: ``escalation_id = <clock id>|<step>`` and the event id derives
  from it, so a retry after a crash re-publishes the *same* event, which every reader ignores;
- the step advance and the outgoing event are one document update (``update_with_events``),
  guarded by the claim and by ``active``: a request accepted meanwhile is not escalated;
- it repeats: the next due time is one more period (the limit again, or ``AUDIT_REPEAT_HOURS``)
  while the clock stays late, one level further up the chain each time, up to the district.
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
from pymongo.errors import DuplicateKeyError

from civicgrid_audit.adapters.documents import CLAIMS, stamped
from civicgrid_audit.adapters.projection import FAR_FUTURE, clock_kind
from civicgrid_audit.domain import timeline
from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import due_at, working_hours_between
from civicgrid_contracts.envelope import derived_event_id
from civicgrid_contracts.events.audit import RequestEscalated
from civicgrid_runtime.calendar import CalendarSource
from civicgrid_runtime.logging import get_logger
from civicgrid_runtime.metrics import ESCALATION_BACKLOG_SECONDS, ESCALATION_DELAY
from civicgrid_runtime.store import OutboxRelay, update_with_events

log = get_logger("civicgrid.audit.scanner")


class DeadlineScanner:
    def __init__(self, deadlines: AsyncCollection, relay: OutboxRelay | None, calendar: CalendarSource, *,
                 source: str, lease_seconds: float = 30.0, repeat_hours: float | None = None,
                 instance: str | None = None, reload_seconds: float = 60.0) -> None:
        self.deadlines = deadlines
        self.claims = deadlines.database[CLAIMS]
        self.relay = relay
        self.calendar = calendar
        self.source = source
        self.lease = timedelta(seconds=lease_seconds)
        self.repeat_hours = repeat_hours
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.escalated = 0
        self.reload_seconds = reload_seconds
        self._heap: list[tuple[datetime, str]] = []
        self._loaded_at: float | None = None

    async def ensure_indexes(self) -> None:
        await self.claims.create_index([("done", 1)], name="done")

    def schedule(self, deadline_id: str, due_at: datetime) -> None:
        """Look at this clock again at ``due_at`` (called by the projection for every clock it writes)."""
        heapq.heappush(self._heap, (timeline.parse_time(due_at), deadline_id))

    async def reload(self) -> None:
        docs = await self.deadlines.find({"active": True}, {"due_at": 1}).to_list(None)
        self._heap = [(timeline.parse_time(d["due_at"]), d["_id"]) for d in docs if d.get("due_at")]
        heapq.heapify(self._heap)
        self._loaded_at = time.monotonic()

    async def scan(self, *, now: datetime | None = None, limit: int = 500) -> int:
        """Escalate every due clock (up to ``limit``); returns how many escalations this replica made."""
        t = now or datetime.now(UTC)
        oldest_due = self._heap[0][0] if self._heap else t
        ESCALATION_BACKLOG_SECONDS.set(max(0.0, (t - oldest_due).total_seconds()))
        if self._loaded_at is None or time.monotonic() - self._loaded_at > self.reload_seconds:
            await self.reload()
        ids: list[str] = []
        while self._heap and self._heap[0][0] <= t and len(ids) < limit:
            _, did = heapq.heappop(self._heap)
            if did not in ids:
                ids.append(did)
        if not ids:
            return 0
        docs = {d["_id"]: d for d in await self.deadlines.find({"_id": {"$in": ids}}).to_list(None)}
        done = 0
        for did in ids:
            doc = docs.get(did)
            if doc is None or not doc.get("active"):
                continue
            due = timeline.parse_time(doc["due_at"])
            if due > t:  # moved on meanwhile (by us or another replica): look again then
                self.schedule(did, due)
                continue
            if await self._handle(doc, t):
                done += 1
        self.escalated += done
        return done

    async def _claim(self, escalation_id: str, now: datetime) -> bool:
        try:
            await self.claims.insert_one(stamped(CLAIMS, {"_id": escalation_id, "by": self.instance,
                                                          "until": now + self.lease, "done": False}))
            return True
        except DuplicateKeyError:
            pass
        claim = await self.claims.find_one({"_id": escalation_id})
        if claim is None or claim.get("done") or timeline.parse_time(claim["until"]) > now:
            return False
        # the holder's lease ran out (it crashed): take over, guarded by what was read (one replica wins)
        taken = await self.claims.update_one({"_id": escalation_id, "by": claim["by"], "until": claim["until"],
                                              "done": False}, {"$set": {"by": self.instance, "until": now + self.lease}})
        if taken.modified_count == 0:
            return False
        log.warning("took over an expired escalation claim", escalation_id=escalation_id, previous=claim["by"])
        return True

    def _due_of_step(self, doc: dict[str, Any], step: int) -> datetime:
        """When escalation ``step`` (>= the clock's step) falls due: one period after the step before,
        counted from the step the clock is at, whose due time was set when it was reached and stays,
        whatever the calendar did since."""
        due = timeline.parse_time(doc.get("due_at") or doc["base_due"])
        period = self.repeat_hours or doc.get("period_hours") or 24.0
        for _ in range(step - int(doc.get("step") or 1)):
            due = due_at(due, period, clock_kind(doc), self.calendar.calendar)
        return due

    async def _release(self, doc: dict[str, Any], fields: dict[str, Any]) -> None:
        await self.deadlines.update_one({"_id": doc["_id"]}, {"$set": fields})

    async def _handle(self, doc: dict[str, Any], now: datetime) -> bool:
        step = max(int(doc.get("step") or 1), int(doc.get("seen") or 0) + 1)
        due = self._due_of_step(doc, step)
        if due > now:  # the projection saw escalations we had not made: just move the clock on
            await self._release(doc, {"step": step, "due_at": due})
            self.schedule(doc["_id"], due)
            return False
        from_level = timeline.higher_level(doc.get("level"), doc.get("esc_level"))
        to_level = timeline.next_level(from_level)
        if to_level is None:  # the district has it: nothing higher to escalate to
            await self._release(doc, {"due_at": FAR_FUTURE, "exhausted": True})
            return False
        escalation_id = f"{doc['_id']}|{step}"
        if not await self._claim(escalation_id, now):
            self.schedule(doc["_id"], now + self.lease)  # another replica holds it: check its work later
            return False
        payload = RequestEscalated(
            request_id=doc["request_id"], escalation_id=escalation_id, clock=doc["clock"], step=step,
            from_level=from_level, to_level=to_level, due_at=due, escalated_at=now,
            overdue_hours=round(working_hours_between(timeline.parse_time(doc["base_due"]), now, clock_kind(doc),
                                                      self.calendar.calendar), 3),
            department=doc.get("department"),
        )
        env = Envelope.wrap(payload, source=self.source, event_id=derived_event_id(escalation_id, payload.event_type),
                            correlation_id=doc["request_id"], time=now)
        next_due = self._due_of_step(doc, step + 1)
        written = await update_with_events(
            self.deadlines, self.relay,
            filter={"_id": doc["_id"], "active": True},
            update={"$set": {"step": step + 1, "due_at": next_due, "esc_level": to_level,
                             "last_escalation": {"escalation_id": escalation_id, "step": step, "at": now,
                                                 "to_level": to_level}}},
            events=[env], crash_point_name="audit.escalation.written",
        )
        if written is None:  # the clock stopped meanwhile (accepted, resolved ...): give the claim back
            await self.claims.delete_one({"_id": escalation_id})
            return False
        await self.claims.update_one({"_id": escalation_id}, {"$set": {"done": True}})
        ESCALATION_DELAY.observe(max(0.0, (now - due).total_seconds()))
        self.schedule(doc["_id"], next_due)
        log.info("escalated", request_id=doc["request_id"], clock=doc["clock"], step=step, to_level=to_level)
        return True
