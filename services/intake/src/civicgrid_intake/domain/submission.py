"""The submission aggregate: one resident's request, its duplicate link and its status.

Every state change goes through a method here that checks the rule it needs, changes the state and
records the events it causes (``pending_events``); a handler loads a ``Submission``, calls one
method, saves it (the events go to the outbox with the same single-document write) and the relay
publishes them. ``version`` counts the saved changes: a save only succeeds on the version it
loaded (the one concurrency rule, see ``ports.RequestStore``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from civicgrid_contracts import Envelope, derived_event_id
from civicgrid_contracts.events.intake import (
    RequestClosed,
    RequestMerged,
    RequestRated,
    RequestReceived,
    RequestReopened,
    RequestUnmerged,
)
from civicgrid_intake.domain.errors import Conflict
from civicgrid_intake.domain.model import OPEN_STATUSES, StatusState, apply


def history_entry(env: Envelope | None, status: str | None, note: str, *, at: datetime | None = None,
                  type_: str | None = None) -> dict[str, Any]:
    return {"event_id": env.id if env else None, "type": env.type if env else type_,
            "at": env.time if env else at, "status": status, "note": note}


@dataclass(frozen=True)
class DuplicateCandidate:
    """An open request near a new one, for the same service: the new one follows it."""

    request_id: str
    distance_m: float
    followers: int


@dataclass
class Submission:
    request_id: str
    #: what the resident sent and the catalogue said at the time (never changes)
    details: dict[str, Any]
    received_at: datetime
    state: StatusState
    updated_at: datetime
    response_due: datetime | None = None
    duplicate_of: str | None = None
    followers_ids: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    #: the first answer the submitter got (an Idempotency-Key replay returns it again)
    answer: dict[str, Any] = field(default_factory=dict)
    idem_hash: str | None = None
    reporter_id: str | None = None
    contact_enc: str | None = None
    contact_erased_at: datetime | None = None
    reopen_count: int = 0
    rating: dict[str, Any] | None = None
    #: ids of lifecycle events already folded in (redeliveries change nothing)
    applied: list[str] = field(default_factory=list)
    version: int = 0
    pending_events: list[Envelope] = field(default_factory=list, repr=False)

    # ------------------------------------------------------------------ creation

    @classmethod
    def receive(cls, received: RequestReceived, *, source: str, details: dict[str, Any],
                parent: DuplicateCandidate | None, answer: dict[str, Any], idem_hash: str | None,
                contact_enc: str | None) -> Submission:
        """A new request from its ``RequestReceived`` (built on the working calendar by the
        handler); following ``parent`` when it is a likely duplicate of an open one."""
        rid, now = received.request_id, received.received_at
        env = Envelope.wrap(received, source=source, event_id=derived_event_id(rid, RequestReceived.event_type),
                            time=now)
        sub = cls(request_id=rid, details=details, received_at=now, updated_at=now, response_due=received.response_due,
                  state=StatusState(status="received", status_notes="Request received", expected_at=received.resolution_due),
                  answer={**answer, "status": "received", "duplicate_of": None}, idem_hash=idem_hash,
                  reporter_id=received.reporter_id, contact_enc=contact_enc, version=1)
        sub._record(env, "received", "Request received")
        if parent is not None:
            merged = env.caused(RequestMerged(request_id=rid, into_request_id=parent.request_id,
                                              distance_m=round(parent.distance_m, 1), followers=parent.followers + 1),
                                source=source, time=now)
            note = f"Likely duplicate of {parent.request_id}; following it"
            sub.duplicate_of = parent.request_id
            sub.state = replace(sub.state, status="merged", status_notes=note)
            sub._record(merged, "merged", note)
            sub.answer.update(
                status="merged", duplicate_of=parent.request_id, followers=parent.followers + 1,
                message=f"A request for the same problem nearby ({parent.distance_m:.0f} m) is already open: "
                        f"{parent.request_id}. You now follow it and will see its progress.")
        return sub

    # ------------------------------------------------------------------ reading

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def is_open(self) -> bool:
        return self.state.status in OPEN_STATUSES

    @property
    def followers(self) -> int:
        """Residents following this request: its reporter and its merged duplicates'."""
        return len(self.followers_ids) + 1

    @property
    def can_be_followed(self) -> bool:
        return self.is_open and self.duplicate_of is None

    @property
    def correlation_id(self) -> str:
        return self.history[0]["event_id"]

    def take_events(self) -> list[Envelope]:
        events, self.pending_events = self.pending_events, []
        return events

    # ------------------------------------------------------------------ duplicates

    def add_follower(self, request_id: str, *, at: datetime) -> bool:
        """A new duplicate follows this request; False if it already did (a retried link)."""
        if request_id in self.followers_ids:
            return False
        self.followers_ids.append(request_id)
        self.updated_at = at
        return True

    def drop_follower(self, request_id: str, *, at: datetime) -> bool:
        if request_id not in self.followers_ids:
            return False
        self.followers_ids.remove(request_id)
        self.updated_at = at
        return True

    def unmerge(self, *, staff_id: str, reason: str, source: str, at: datetime) -> str:
        """Staff say this is not a duplicate after all; returns the request it followed."""
        parent_id = self.duplicate_of
        if not parent_id:
            raise Conflict("This request is not merged into another one.", field="duplicate_of")
        env = Envelope.wrap(RequestUnmerged(request_id=self.request_id, from_request_id=parent_id, staff_id=staff_id,
                                            reason=reason), source=source, correlation_id=self.correlation_id, time=at)
        status = "received" if self.status == "merged" else self.status
        self.duplicate_of = None
        self.state = replace(self.state, status=status, status_notes=f"Unmerged: {reason}")
        self._record(env, status, f"Unmerged from {parent_id}: {reason}")
        return parent_id

    # ------------------------------------------------------------------ the resident's rating

    def rate(self, rating: str, comment: str | None, *, source: str, at: datetime) -> None:
        """Only a resolved request is rated; 'unsatisfied' reopens it, any other rating closes it."""
        if self.status != "resolved":
            raise Conflict(f"Only a resolved request can be rated; this one is {self.status}.", field="rating")
        rated = Envelope.wrap(RequestRated(request_id=self.request_id, rating=rating, comment=comment,
                                           reporter_id=self.reporter_id, rated_at=at),
                              source=source, correlation_id=self.correlation_id, time=at)
        self._record(rated, self.status, f"Rated {rating}")
        if rating == "unsatisfied":
            self.reopen_count += 1
            follow = rated.caused(RequestReopened(request_id=self.request_id, reason="The resident was not satisfied"
                                                  + (f": {comment}" if comment else ""),
                                                  reopened_at=at, reopen_count=self.reopen_count), source=source, time=at)
            status, note = "reopened", "Reopened: the resident was not satisfied"
        else:
            follow = rated.caused(RequestClosed(request_id=self.request_id, reason=f"Rated {rating}", closed_at=at),
                                  source=source, time=at)
            status, note = "closed", f"Closed after the resident's rating ({rating})"
        self.state = replace(self.state, status=status, status_notes=note)
        self.rating = {"rating": rating, "comment": comment, "at": at}
        self._record(follow, status, note)

    def erase_contact(self, *, at: datetime) -> None:
        self.contact_enc = None
        self.contact_erased_at = at
        self.history.append(history_entry(None, None, "Contact details erased at the resident's request", at=at,
                                          type_="intake.contact_erased"))
        self.updated_at = at

    # ------------------------------------------------------------------ lifecycle (other services' events)

    def apply(self, env: Envelope) -> bool:
        """Fold another service's lifecycle event into the status; False if already applied."""
        if env.id in self.applied:
            return False
        self.applied.append(env.id)
        res = apply(self.state, env)
        if res is not None:
            self.state, entry = res
            self.history.append(entry)
            self.updated_at = env.time
        return True

    # ------------------------------------------------------------------ internals

    def _record(self, env: Envelope, status: str, note: str) -> None:
        self.pending_events.append(env)
        self.history.append(history_entry(env, status, note))
        self.updated_at = env.time
