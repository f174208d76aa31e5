"""The roster's rules: staff members, A/B posts (AB岗) and who serves a post right now. Pure, no I/O.

Every post (a line of work in an area) has a primary holder A and a trained backup B who takes the
post's requests while A is away, on leave or at their load limit. A post always keeps an A; B may
be vacant for a while (the chain above then covers). A holder must be on the roster (active), of
the role the post's level needs, trained for its line and working in the post's neighbourhood (the
area one level up: a grid's post is held by workers of that community)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from civicgrid_grid.domain.assignment import Staff
from civicgrid_grid.domain.errors import InvalidValue, NotAllowed

#: the lines of work a post covers (assignment.line_for decides a request's line)
LINES: tuple[str, ...] = ("general", "care")
#: an area code's length gives its level
LEVEL_OF_LENGTH = {6: "district", 9: "street", 12: "community", 15: "grid"}
#: who may hold a post of each level: grid posts are grid workers', the levels above supervisors'
HOLDER_ROLE = {"grid": "grid_worker", "community": "supervisor", "street": "supervisor", "district": "supervisor"}
#: the roles of people on the roster (departments, volunteers, auditors are not)
STAFF_ROLES: tuple[str, ...] = ("grid_worker", "supervisor")
DUTIES: tuple[str, ...] = ("on", "off", "leave")


def post_id(area: str, line: str) -> str:
    """A post's id: its area and line of work, so the posts of a grid are read by id."""
    return f"p{area}-{line}"


def level_of(area: str) -> str | None:
    return LEVEL_OF_LENGTH.get(len(area)) if area.isdigit() else None


def neighbourhood_of(area: str) -> str:
    """The area one level up (a grid's community); the district is its own."""
    return area[:-3] if len(area) > 6 else area


@dataclass
class StaffMember:
    """A person on the roster: profile (name, role, area, trained lines, load limit, active), duty
    state (on duty, away until a moment, on leave until a day) and the live load counter the
    assigner keeps (read here, never written: it commutes with every profile change)."""

    id: str
    name: str
    role: str
    area: str
    lines: tuple[str, ...] = LINES
    active: bool = True
    limit: int = 20
    duty: str = "on"
    leave_until: str | None = None  # ISO date, inclusive: the district's day
    away_until: datetime | None = None
    load: int = 0
    version: int = 0

    @property
    def level(self) -> str:
        return level_of(self.area) or "grid"

    def as_candidate(self) -> Staff:
        return Staff(self.id, self.duty, self.leave_until, self.load, self.limit, self.away_until, self.active)

    def why_not_holder_of(self, post: Post) -> str | None:
        """Why this person cannot hold ``post`` (None: they can)."""
        if not self.active:
            return "is no longer on the roster"
        needed = HOLDER_ROLE.get(post.level, "grid_worker")
        if self.role != needed:
            return f"is a {self.role}; a {post.level} post needs a {needed}"
        if post.line not in self.lines:
            return f"is not trained for the {post.line} line"
        if not self.area.startswith(neighbourhood_of(post.area)):
            return f"works in {self.area}, outside {neighbourhood_of(post.area)}"
        return None

    # ---------------------------------------------------------------------------- profile
    @classmethod
    def new(cls, sid: str, *, name: str, role: str, area: str, lines: list[str], limit: int) -> StaffMember:
        member = cls(sid, "", role, area, limit=limit)
        member._set_profile(name=name, role=role, area=area, lines=lines, limit=limit)
        return member

    def update_profile(self, *, name: str, role: str, area: str, lines: list[str], limit: int, active: bool,
                       held: list[Post]) -> dict[str, Any]:
        """Change the profile; refused while it would leave a post this person holds with a holder
        who no longer qualifies (change the post first). Returns what changed (non-personal: the
        name's new value is not repeated)."""
        after = replace(self)  # decided on a copy: a refused change leaves this member as it was
        after._set_profile(name=name, role=role, area=area, lines=lines, limit=limit)
        after.active = active
        broken = [f"{p.id} ({p.holder_label(self.id)}: {why})" for p in held
                  if (why := after.why_not_holder_of(p)) is not None]
        if broken:
            raise NotAllowed(f"{self.id} holds posts this change would leave without a qualified holder: "
                             f"{', '.join(broken)}; give those posts another holder first.")
        changes = after._changes(self)
        self.name, self.role, self.area, self.lines, self.limit, self.active = (
            after.name, after.role, after.area, after.lines, after.limit, after.active)
        return changes

    def _set_profile(self, *, name: str, role: str, area: str, lines: list[str], limit: int) -> None:
        if not name.strip():
            raise InvalidValue("name", "must not be blank")
        if role not in STAFF_ROLES:
            raise InvalidValue("role", f"must be one of {', '.join(STAFF_ROLES)}")
        level = level_of(area)
        if level is None:
            raise InvalidValue("area", "must be a district, street, community or grid code (6, 9, 12 or 15 digits)")
        if role == "grid_worker" and level != "grid":
            raise InvalidValue("area", "a grid worker works in a grid (15 digits)")
        if role == "supervisor" and level == "grid":
            raise InvalidValue("area", "a supervisor oversees a community, street or the district")
        unknown = sorted(set(lines) - set(LINES))
        if unknown:
            raise InvalidValue("lines", f"unknown lines of work: {', '.join(unknown)}")
        if limit < 1:
            raise InvalidValue("limit", "must be at least 1")
        self.name, self.role, self.area, self.limit = name.strip(), role, area, limit
        self.lines = tuple(line for line in LINES if line in lines)

    def _changes(self, before: StaffMember) -> dict[str, Any]:
        """What differs from ``before``."""
        out: dict[str, Any] = {}
        for f in ("role", "area", "limit", "active"):
            if getattr(before, f) != getattr(self, f):
                out[f] = getattr(self, f)
        if before.lines != self.lines:
            out["lines"] = ",".join(self.lines)
        if before.name != self.name:
            out["name"] = "changed"  # who they are is the roster's business, not the trail's
        return out

    # ---------------------------------------------------------------------------- duty
    def set_duty(self, duty: str, *, leave_until: str | None, away_until: datetime | None, limit: int | None,
                 today: date, now: datetime) -> dict[str, Any]:
        """On duty, away (until a moment, or until they are back), or on leave until a day."""
        if duty not in DUTIES:
            raise InvalidValue("duty", f"must be one of {', '.join(DUTIES)}")
        if not self.active:
            raise NotAllowed(f"{self.id} is no longer on the roster.")
        if duty == "leave":
            if not leave_until:
                raise InvalidValue("leave_until", "required when duty is leave")
            if leave_until < today.isoformat():
                raise InvalidValue("leave_until", f"is before today ({today.isoformat()})")
        elif leave_until:
            raise InvalidValue("leave_until", "only with duty leave")
        if away_until is not None:
            if duty != "off":
                raise InvalidValue("away_until", "only with duty off")
            if away_until.tzinfo is None:
                raise InvalidValue("away_until", "needs a time zone offset")
            if away_until <= now:
                raise InvalidValue("away_until", "is not in the future")
        if limit is not None and limit < 1:
            raise InvalidValue("limit", "must be at least 1")
        self.duty, self.leave_until, self.away_until = duty, leave_until, away_until
        if limit is not None:
            self.limit = limit
        return {"duty": duty, "leave_until": leave_until,
                "away_until": away_until.isoformat() if away_until else None, "limit": limit}


@dataclass
class Post:
    """A line of work in an area and its two holders."""

    id: str
    area: str
    line: str
    level: str
    a: str
    b: str | None = None
    version: int = 0

    def holder_label(self, sid: str) -> str:
        return "A" if sid == self.a else "B" if sid == self.b else "-"

    def change_holders(self, a: StaffMember | None, b: StaffMember | None) -> dict[str, Any]:
        """Give the post these holders (``b`` None leaves B vacant). Returns what changed."""
        if a is None:
            raise InvalidValue("a", "a post always has an A")
        for name, person in (("a", a), ("b", b)):
            why = person.why_not_holder_of(self) if person is not None else None
            if why:
                raise InvalidValue(name, f"{person.id} {why}")
        if b is not None and b.id == a.id:
            raise InvalidValue("b", "B must be a different person from A")
        before = (self.a, self.b)
        self.a, self.b = a.id, b.id if b is not None else None
        return {k: v for k, old, v in (("a", before[0], self.a), ("b", before[1], self.b)) if old != v}


@dataclass(frozen=True)
class Cover:
    """Who takes a post's next request: "A", "B" (covering for A), or "chain" (neither can), and why
    A does not (empty when A serves)."""

    serving: str
    reason: str = ""


def cannot_take(s: Staff | None, today: date, at: datetime) -> str | None:
    """Why someone would be skipped for a new request now (the assigner's reasons)."""
    if s is None:
        return "unknown staff member"
    why = s.unavailable_because(today, at)
    if why is None and s.load >= s.limit:
        return f"at load limit ({s.limit})"
    return why


def who_serves(post: Post, holders: dict[str, Staff], today: date, at: datetime) -> Cover:
    why_a = cannot_take(holders.get(post.a), today, at)
    if why_a is None:
        return Cover("A")
    if not post.b:
        return Cover("chain", f"A {why_a}; no B")
    why_b = cannot_take(holders.get(post.b), today, at)
    if why_b is None:
        return Cover("B", f"A {why_a}")
    return Cover("chain", f"A {why_a}, B {why_b}")


@dataclass
class PostView:
    """A post as the roster pages show it: its holders and who serves it now."""

    post: Post
    a: StaffMember | None
    b: StaffMember | None
    cover: Cover


def view_of(post: Post, people: dict[str, StaffMember], today: date, at: datetime) -> PostView:
    holders = {sid: people[sid].as_candidate() for sid in (post.a, post.b) if sid and sid in people}
    return PostView(post, people.get(post.a), people.get(post.b) if post.b else None,
                    who_serves(post, holders, today, at))
