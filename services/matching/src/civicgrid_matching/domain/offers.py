"""The offers of one match and who was asked: ranks continue across rounds, and an offer is
open, accepted, declined, expired, withdrawn or no_show. The match (``match.Match``) decides when
offers open and close and records the events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from civicgrid_matching.domain.errors import NotFound
from civicgrid_matching.domain.index import Candidate
from civicgrid_matching.domain.model import as_utc

OPEN = "open"


def offer_id(request_id: str, generation: int, volunteer_id: str) -> str:
    """Readable and deterministic; names its request, so no lookup table is needed."""
    return f"{request_id}~{generation}~{volunteer_id}"


def request_of(oid: str) -> str:
    return oid.rsplit("~", 2)[0]


@dataclass
class Offer:
    offer_id: str
    volunteer_id: str
    rank: int
    score: float
    distance_m: float
    components: dict[str, float]
    status: str
    offered_at: datetime
    expires_at: datetime

    @property
    def open(self) -> bool:
        return self.status == OPEN


@dataclass(kw_only=True)
class OfferBook:
    offers: list[Offer] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    @property
    def open_offers(self) -> list[Offer]:
        return [o for o in self.offers if o.open]

    def offer(self, oid: str, volunteer_id: str) -> Offer:
        o = next((o for o in self.offers if o.offer_id == oid), None)
        if o is None or o.volunteer_id != volunteer_id:
            raise NotFound("No such offer for you")
        return o

    def shortfall(self, closing: set[str], offers_at_once: int) -> int:
        """How many new offers would keep ``offers_at_once`` open once ``closing`` close."""
        return max(0, offers_at_once - len([o for o in self.open_offers if o.offer_id not in closing]))

    def open_past(self, now: datetime) -> set[str]:
        return {o.offer_id for o in self.open_offers if as_utc(o.expires_at) <= now}

    def add_offers(self, request_id: str, generation: int, cands: list[Candidate], now: datetime,
                   ttl: timedelta) -> list[Offer]:
        rank_from = len(self.offers) + 1
        new = [Offer(offer_id(request_id, generation, c.volunteer_id), c.volunteer_id, rank_from + n,
                     round(c.score, 6), round(c.distance_m, 1), {k: round(v, 4) for k, v in c.components.items()},
                     OPEN, now, now + ttl) for n, c in enumerate(cands)]
        self.offers.extend(new)
        self.asked.extend(c.volunteer_id for c in cands)
        return new
