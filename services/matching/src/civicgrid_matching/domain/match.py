"""The match: one request's search for a volunteer -- its offers, who was asked, who won.

Rules kept here: at most ``offers_at_once`` offers are open at a time; an offer can be accepted
only while open, unexpired and nobody has won; the first accept wins and withdraws the others; a
decline or an expiry asks the next candidates, and when nobody is left the request is reported
unmatched; a resolved or rejected request withdraws what is open. Each change records the events
it causes (``events``) with ids derived from what caused them, so a retried change publishes the
same ids and readers drop the repeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from civicgrid_contracts import Envelope
from civicgrid_contracts.envelope import EventPayload
from civicgrid_contracts.events import grid as grid_ev
from civicgrid_contracts.events import matching as ev
from civicgrid_matching.domain.errors import NotAssigned, NotFound, OfferClosed, Taken, WrongState
from civicgrid_matching.domain.events import Recorded, record
from civicgrid_matching.domain.index import Candidate, MatchQuery
from civicgrid_matching.domain.model import as_utc
from civicgrid_matching.domain.offers import Offer, OfferBook, offer_id, request_of  # noqa: F401 - re-exported

# match statuses
OPEN, ACCEPTED, DELIVERED, UNMATCHED, CLOSED = "open", "accepted", "delivered", "unmatched", "closed"
#: a new request for a match in these statuses changes nothing (it is being served)
SERVING = (OPEN, ACCEPTED, DELIVERED)
# offer statuses besides OPEN and ACCEPTED
DECLINED, EXPIRED, WITHDRAWN, NO_SHOW = "declined", "expired", "withdrawn", "no_show"


@dataclass(frozen=True)
class Shortlist:
    """The next candidates the ranking found, and why there are none when there are none."""

    candidates: list[Candidate]
    considered: int = 0
    reason: str = "the request has no coordinates"


@dataclass
class Visit:
    """What the request needs (from VolunteerRequested and the catalogue)."""

    service_code: str
    lat: float | None
    lon: float | None
    community: str | None
    needed_from: datetime
    needed_hours: float
    recurring: bool = False
    resident_ref: str | None = None
    required_qualifications: list[str] = field(default_factory=list)

    def query(self, distance_limit_m: float) -> MatchQuery | None:
        if self.lat is None or self.lon is None:
            return None
        return MatchQuery(lat=self.lat, lon=self.lon, service_code=self.service_code,
                          start=as_utc(self.needed_from), hours=self.needed_hours,
                          required_qualifications=tuple(self.required_qualifications),
                          resident_ref=self.resident_ref, recurring=self.recurring,
                          distance_limit_m=distance_limit_m)


@dataclass
class Match(OfferBook):
    request_id: str
    visit: Visit
    correlation_id: str
    cause_id: str
    requested_at: datetime
    generation: int = 1
    status: str = OPEN
    winner: str | None = None
    accepted_at: datetime | None = None
    unmatched: dict | None = None
    no_show: dict | None = None
    rating: str | None = None
    #: ids of the consumed events already applied (bounded by the request's lifetime)
    applied: list[str] = field(default_factory=list)
    version: int = 0
    events: list[Recorded] = field(default_factory=list, repr=False)
    #: the next expiry the store last held (so an adapter keeping an expiry queue writes it only
    #: when it changes); not part of the match's state
    stored_expiry: datetime | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ creation

    @classmethod
    def requested(cls, env: Envelope, required_qualifications: list[str], generation: int = 1) -> Match:
        p: grid_ev.VolunteerRequested = env.data  # type: ignore[assignment]
        visit = Visit(p.service_code, p.location.lat, p.location.lon, p.community, p.needed_from, p.needed_hours,
                      p.recurring_weekly, p.resident_ref, list(required_qualifications))
        return cls(p.request_id, visit, env.correlationid, env.id, p.requested_at, generation, applied=[env.id])

    def request_again(self, env: Envelope, required_qualifications: list[str]) -> bool:
        """A new VolunteerRequested for a known request. True when it starts a new search (the
        caller then offers to a shortlist); False when it changes nothing but the record."""
        if env.id in self.applied:
            return False
        self.applied.append(env.id)
        if self.status in SERVING:
            return False
        fresh = Match.requested(env, required_qualifications, self.generation + 1)
        self.visit, self.correlation_id, self.cause_id = fresh.visit, fresh.correlation_id, fresh.cause_id
        self.requested_at, self.generation = fresh.requested_at, fresh.generation
        self.status, self.offers, self.asked, self.winner = OPEN, [], [], None
        self.accepted_at = self.unmatched = self.no_show = None
        return True

    def offer_first(self, shortlist: Shortlist, now: datetime, ttl: timedelta) -> None:
        """The first round of offers of this generation (or the unmatched verdict)."""
        cause = self.cause_id
        self._offer(shortlist.candidates, now, ttl, cause=cause)
        if not shortlist.candidates:
            self._unmatched(shortlist.reason, shortlist.considered, now, cause=cause, disc="")

    # ------------------------------------------------------------------ reading

    @property
    def offered_to(self) -> list[str]:
        """Volunteers with an open offer (indexed for "my offers")."""
        return sorted({o.volunteer_id for o in self.open_offers}) if self.winner is None else []

    @property
    def next_expiry(self) -> datetime | None:
        if self.status != OPEN:
            return None
        return min((o.expires_at for o in self.open_offers), default=None)

    def expired(self, now: datetime) -> set[str]:
        if self.status != OPEN or self.winner:
            return set()
        return self.open_past(now)

    def assignment_of(self, volunteer_id: str) -> None:
        if self.winner != volunteer_id:
            raise NotAssigned("You are not the volunteer of this request")

    # ------------------------------------------------------------------ volunteers' answers

    def check_acceptable(self, volunteer_id: str, oid: str, now: datetime) -> Offer:
        """The offer, if accepting it now is allowed; raises the rule that refuses it otherwise."""
        o = self.offer(oid, volunteer_id)
        if self.winner:
            raise Taken("Another volunteer has already accepted this request")
        if not o.open:
            raise OfferClosed(o.status)
        if as_utc(o.expires_at) <= now:
            raise OfferClosed(EXPIRED)
        return o

    def accept(self, volunteer_id: str, oid: str, now: datetime) -> bool:
        """First accept wins; False when this volunteer already won through this offer."""
        if self.winner == volunteer_id and self.offer(oid, volunteer_id).status == ACCEPTED:
            return False
        o = self.check_acceptable(volunteer_id, oid, now)
        o.status = ACCEPTED
        self.winner, self.status, self.accepted_at = volunteer_id, ACCEPTED, now
        self._record(ev.VolunteerAccepted(request_id=self.request_id, offer_id=oid, volunteer_id=volunteer_id,
                                          accepted_at=now), oid, now)
        self._withdraw_open("another volunteer accepted", now)
        return True

    def decline(self, volunteer_id: str, oid: str, reason: str | None, now: datetime, next_up: Shortlist,
                ttl: timedelta) -> bool:
        o = self.offer(oid, volunteer_id)
        if o.status == DECLINED:
            return False
        if not o.open:
            raise OfferClosed(o.status)
        o.status = DECLINED
        self._record(ev.VolunteerDeclined(request_id=self.request_id, offer_id=oid, volunteer_id=volunteer_id,
                                          reason=reason, declined_at=now), oid, now)
        self._top_up(next_up, now, ttl)
        return True

    def expire(self, now: datetime, next_up: Shortlist, ttl: timedelta) -> list[str]:
        """Expire the open offers past their time and ask the next candidates; returns the
        volunteers whose offer expired."""
        gone = sorted(self.expired(now))
        for o in self.offers:
            if o.offer_id in gone:
                o.status = EXPIRED
                self._record(ev.OfferExpired(request_id=self.request_id, offer_id=o.offer_id,
                                             volunteer_id=o.volunteer_id, expired_at=now), o.offer_id, now)
        if gone:
            self._top_up(next_up, now, ttl)
        return [o.volunteer_id for o in self.offers if o.offer_id in gone]

    # ------------------------------------------------------------------ staff and the request's fate

    def report_no_show(self, by: str, now: datetime, next_up: Shortlist, ttl: timedelta) -> str:
        """The accepted volunteer did not come: the search reopens; returns who did not come."""
        if not self.winner:
            raise NotFound("No accepted volunteer on this request")
        if self.status != ACCEPTED:
            raise WrongState(f"The request is {self.status}")
        vid, self.winner = self.winner, None
        for o in self.offers:
            if o.status == ACCEPTED:
                o.status = NO_SHOW
        self.status = OPEN
        self.no_show = {"volunteer_id": vid, "by": by, "at": now}
        self._top_up(next_up, now, ttl)
        return vid

    def close(self, env: Envelope, now: datetime) -> bool:
        """The request was resolved or rejected: withdraw what is open. False if already applied."""
        if env.id in self.applied:
            return False
        self.applied.append(env.id)
        rejected = isinstance(env.data, grid_ev.RequestRejected)
        self._withdraw_open("request rejected" if rejected else "request resolved", now, cause=env.id)
        if self.status != DELIVERED:
            self.status = CLOSED
        return True

    def releases_booking_on(self, env: Envelope) -> bool:
        """Whether closing the request frees the winner's slot (not after delivery; a weekly
        service resolved for now keeps its slot)."""
        rejected = isinstance(env.data, grid_ev.RequestRejected)
        return bool(self.winner) and self.status != DELIVERED and (rejected or not self.visit.recurring)

    def delivered(self) -> None:
        self.status = DELIVERED

    def rated(self, env: Envelope, rating: str) -> bool:
        if env.id in self.applied:
            return False
        self.applied.append(env.id)
        self.rating = rating
        return True

    # ------------------------------------------------------------------ internals

    def _offer(self, cands: list[Candidate], now: datetime, ttl: timedelta, cause: str | None = None) -> None:
        for o in self.add_offers(self.request_id, self.generation, cands, now, ttl):
            self._record(ev.VolunteerOffered(request_id=self.request_id, offer_id=o.offer_id,
                                             volunteer_id=o.volunteer_id, rank=o.rank, score=o.score,
                                             distance_m=o.distance_m, expires_at=o.expires_at, offered_at=now),
                         o.offer_id, now, cause=cause)
        if cands:
            self.status = OPEN

    def _top_up(self, next_up: Shortlist, now: datetime, ttl: timedelta) -> None:
        asked_before = len(self.asked)
        self._offer([c for c in next_up.candidates if c.volunteer_id not in self.asked], now, ttl)
        if not self.open_offers and self.winner is None:
            self._unmatched(f"every offer was declined or expired; {next_up.reason}",
                            asked_before + next_up.considered, now, cause=None, disc="unmatched")

    def _unmatched(self, reason: str, considered: int, now: datetime, *, cause: str | None, disc: str) -> None:
        self.status = UNMATCHED
        self.unmatched = {"reason": reason, "considered": considered, "at": now}
        self._record(ev.VolunteerUnmatched(request_id=self.request_id, reason=reason,
                                           candidates_considered=considered, unmatched_at=now), disc, now, cause=cause)

    def _withdraw_open(self, reason: str, now: datetime, cause: str | None = None) -> None:
        for o in self.open_offers:
            o.status = WITHDRAWN
            self._record(ev.OfferWithdrawn(request_id=self.request_id, offer_id=o.offer_id,
                                           volunteer_id=o.volunteer_id, reason=reason, withdrawn_at=now),
                         o.offer_id, now, cause=cause)

    @property
    def basis(self) -> str:
        """What a change by a volunteer, staff or a job derives its events' ids from."""
        return f"{self.request_id}|{self.generation}"

    def _record(self, payload: EventPayload, disc: str, now: datetime, cause: str | None = None) -> None:
        """``cause``: the consumed event's id when it directly caused this one."""
        self.events.append(record(payload, basis=cause or self.basis, discriminator=disc,
                                  causation_id=cause or self.cause_id, correlation_id=self.correlation_id, at=now))
