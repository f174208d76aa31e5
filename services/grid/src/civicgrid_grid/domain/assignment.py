"""Who gets a request: A, then B, then up the chain -- pure decision logic, no I/O.

The load limit is not decided here: it can only be checked atomically in the store. ``plan`` gives
the ordered candidates with the reason each earlier one was skipped for duty; the assigner tries to
reserve load on each available candidate in order and adds "at load limit" reasons as it goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from civicgrid_contracts.values import CHAIN_LEVELS

LEVEL_LABEL = {"unit": "unit party member", "building": "building leader", "grid": "grid branch head",
               "community": "community", "street": "street", "district": "district"}


@dataclass(frozen=True)
class Staff:
    id: str
    duty: str = "on"  # "on", "off", "leave"
    leave_until: str | None = None  # ISO date, inclusive
    load: int = 0
    limit: int = 20
    #: off duty until this moment (None: until they say they are back)
    away_until: datetime | None = None
    #: False once the person left the roster (kept for the history of what they held)
    active: bool = True

    def unavailable_because(self, today: date, at: datetime | None = None) -> str | None:
        if not self.active:
            return "no longer on the roster"
        if self.duty == "off":
            if self.away_until is not None and at is not None and at >= self.away_until:
                return None  # back: the time they gave has passed
            return "off duty"
        if self.duty == "leave":
            if self.leave_until and self.leave_until < today.isoformat():
                return None  # the leave is over
            return f"on leave until {self.leave_until}" if self.leave_until else "on leave"
        return None


@dataclass(frozen=True)
class Candidate:
    staff_id: str
    holder: str  # "A", "B", "chain"
    level: str
    label: str  # "A", "B", "grid branch head", ...
    skip: str | None  # why this candidate cannot take it (duty), None when available
    limited: bool = True  # the last resort takes it regardless of load


@dataclass
class Decision:
    staff_id: str
    holder: str
    level: str
    reason: str
    skipped: list[str] = field(default_factory=list)


def plan(post: dict | None, staff: dict[str, Staff], chain: list[tuple[str, str]], today: date,
         at: datetime | None = None) -> list[Candidate]:
    """Candidates in order: A, B, then the chain (grid branch head, community, street, district).
    ``chain`` is [(level, staff_id)] from the lowest level upwards. The top of the chain is the last
    resort and is never load-limited, so a request always has a holder."""
    out: list[Candidate] = []
    if post:
        for holder in ("A", "B"):
            sid = post.get(holder.lower())
            if not sid:
                continue
            s = staff.get(sid)
            skip = "unknown staff member" if s is None else s.unavailable_because(today, at)
            out.append(Candidate(sid, holder, post.get("level", "grid"), holder, skip))
    for level, sid in chain:
        s = staff.get(sid)
        skip = "unknown staff member" if s is None else s.unavailable_because(today, at)
        out.append(Candidate(sid, "chain", level, LEVEL_LABEL.get(level, level), skip))
    if out:
        last = out[-1]
        out[-1] = Candidate(last.staff_id, last.holder, last.level, last.label, None, limited=False)
    return out


def reason_text(chosen: Candidate, skipped: list[str]) -> str:
    head = chosen.holder if chosen.holder in ("A", "B") else f"chain ({chosen.label})"
    if not skipped:
        return f"{head}: on duty"
    return f"{head}: " + ", ".join(skipped)


def next_level(level: str) -> str:
    i = CHAIN_LEVELS.index(level)
    return CHAIN_LEVELS[min(i + 1, len(CHAIN_LEVELS) - 1)]


def line_for(service_group: str | None, service_code: str | None) -> str:
    """The line of work (post) a service belongs to: care services go to the care post."""
    text = f"{service_group or ''} {service_code or ''}".lower()
    return "care" if any(w in text for w in ("care", "elder", "child", "disab", "health", "养老", "助")) else "general"
