"""The roster pages' rules: which area the pickers name, the bodies the forms send to grid's roster
API (and the field each input answers for), and the sentences that say who serves a post and who
covers for whom, in the visitor's language. Grid decides; nothing here repeats its rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from civicgrid_console.domain.i18n import t

LINES = ("general", "care")
DUTIES = ("on", "off", "leave")
#: the one place a form sends the visitor back to
BACK = "/admin/roster"


class FormErrors(Exception):
    """Input the console can tell is wrong before asking grid: {field: message key}."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(", ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Picked:
    street: str
    community: str
    grid: str

    @property
    def area(self) -> str:
        """The most precise area chosen ('' when none)."""
        return self.grid or self.community or self.street

    def query(self) -> str:
        return "&".join(f"{k}={v}" for k, v in (("street", self.street), ("community", self.community),
                                                 ("grid", self.grid)) if v)


def picked(street: str = "", community: str = "", grid: str = "", *, default: str = "") -> Picked:
    """The pickers' choice made consistent: a level that no longer lies in the one above it (the
    visitor changed the street, say) is dropped; a level given alone fills the ones above it."""
    codes = {n: v if re.fullmatch(rf"\d{{{n}}}", v or "") else "" for n, v in ((9, street), (12, community),
                                                                            (15, grid))}
    if not any(codes.values()) and default:
        codes = {n: default[:n] if len(default) >= n else "" for n in codes}
    street, community, grid = codes[9], codes[12], codes[15]
    if grid and community and not grid.startswith(community):
        grid = ""
    if community and street and not community.startswith(street):
        community, grid = "", ""
    community = community or grid[:12]
    return Picked(street or community[:9], community, grid)


def safe_back(value: str | None) -> str:
    """Where a roster form sends the visitor afterwards: the roster page only."""
    return value if value and (value == BACK or value.startswith(BACK + "?")) and "//" not in value else BACK


# ------------------------------------------------------------------------------ form bodies


def _version(form) -> int:
    try:
        return int(str(form.get("version", "")).strip())
    except ValueError:
        raise FormErrors({"version": "roster.err.reload"}) from None


def post_body(form) -> dict[str, Any]:
    b = str(form.get("b") or "").strip()
    return {"a": str(form.get("a") or "").strip(), "b": b or None, "version": _version(form)}


def local_moment(value: str, tz: ZoneInfo) -> str:
    """A ``datetime-local`` value read in the office's time zone, as ISO 8601 with its offset."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise FormErrors({"away_until": "roster.err.moment"}) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).isoformat()


def duty_body(form, tz: ZoneInfo, *, own: bool = False) -> dict[str, Any]:
    duty = str(form.get("duty") or "")
    if duty not in (("on", "off") if own else DUTIES):
        raise FormErrors({"duty": "roster.err.duty"})
    body: dict[str, Any] = {"duty": duty}
    away = str(form.get("away_until") or "").strip()
    if duty == "off" and away:
        body["away_until"] = local_moment(away, tz)
    leave = str(form.get("leave_until") or "").strip()
    if duty == "leave":
        body["leave_until"] = leave or None  # grid names the field when it is missing
    if str(form.get("version") or "").strip():
        body["version"] = _version(form)
    return body


def _limit(form) -> int:
    try:
        return int(str(form.get("limit", "")).strip())
    except ValueError:
        raise FormErrors({"limit": "roster.err.number"}) from None


def profile_body(form) -> dict[str, Any]:
    return {"name": str(form.get("name") or "").strip(), "role": str(form.get("role") or ""),
            "area": str(form.get("area") or "").strip(), "lines": [x for x in form.getlist("lines") if x in LINES],
            "limit": _limit(form), "active": form.get("active") == "on", "version": _version(form)}


def new_member_body(form) -> dict[str, Any]:
    return {"id": str(form.get("id") or "").strip(), "name": str(form.get("name") or "").strip(),
            "role": str(form.get("role") or ""), "area": str(form.get("area") or "").strip(),
            "lines": [x for x in form.getlist("lines") if x in LINES], "limit": _limit(form)}


# ------------------------------------------------------------------------------ grid's words, localised

#: grid's refusals and reasons (English, from its domain) -> a message key with the parts it names
_PHRASES: tuple[tuple[str, str], ...] = (
    (r"different person from A", "roster.err.same_person"),
    (r"always has an A", "roster.err.need_a"),
    (r"is not trained for the (?P<line>\w+) line", "roster.err.untrained"),
    (r"is no longer on the roster", "roster.err.inactive"),
    (r"a (?P<level>\w+) post needs a (?P<role>\w+)", "roster.err.role"),
    (r"works in \d+, outside (?P<area>\d+)", "roster.err.outside"),
    (r"unknown (staff member|\S+)$|No staff member", "roster.err.unknown"),
    (r"required when duty is leave", "roster.err.leave_until_required"),
    (r"is before today|is not in the future", "roster.err.past"),
    (r"unknown area|is not in map version", "roster.err.unknown_area"),
    (r"changed meanwhile|version", "roster.err.reload"),
)


def error_text(lang: str, message: str) -> str:
    """A field's error in the visitor's language where the console knows the phrase; grid's own
    words otherwise."""
    for pattern, key in _PHRASES:
        m = re.search(pattern, message or "")
        if m:
            kw = {k: t(lang, f"roster_{k}.{v}") if k in ("line", "level") else t(lang, f"role.{v}") if k == "role"
                  else v for k, v in m.groupdict().items() if v is not None}
            return t(lang, key, **kw)
    return message


def field_errors(lang: str, errors: list[dict[str, Any]]) -> dict[str, str]:
    """The API's errors by the form field they name (``lines/0`` is the field ``lines``)."""
    out: dict[str, str] = {}
    for e in errors:
        name = str(e.get("field") or "").split("/")[0] or "form"
        out.setdefault(name, error_text(lang, str(e.get("message") or "")))
    return out


def why_text(lang: str, reason: str, *, about_a: bool = False) -> str:
    """Grid's reason a holder is skipped ("A off duty, B at load limit (20)"), localised; with
    ``about_a`` (B covers: the reason is A's) without the "A" in front."""
    parts = []
    for part in filter(None, re.split(r"[,;] ", reason or "")):
        m = re.fullmatch(r"(?:(?P<who>[AB]) )?(?P<what>.+)", part)
        who, what = m["who"] or "", m["what"]
        if what == "off duty":
            text = t(lang, "duty.off")
        elif (leave := re.fullmatch(r"on leave until (\S+)", what)) is not None:
            text = t(lang, "roster.why.leave_until", day=leave[1])
        elif what == "on leave":
            text = t(lang, "duty.leave")
        elif (full := re.fullmatch(r"at load limit \((\d+)\)", what)) is not None:
            text = t(lang, "roster.why.full", n=full[1])
        elif what == "no B":
            text = t(lang, "roster.why.no_b")
        elif what == "no longer on the roster":
            text = t(lang, "roster.why.inactive")
        else:
            text = what
        parts.append(f"{who} {text}" if who and not about_a else text)
    return t(lang, "roster.why.sep").join(parts)


def person_label(p: dict[str, Any] | None, sid: str | None) -> str:
    if not sid:
        return ""
    return f"{p.get('name') or sid} ({sid})" if p else sid


def serving_text(lang: str, post: dict[str, Any]) -> str:
    """Who takes the post's next request now, and who covers for whom."""
    a, b = person_label(post.get("a"), post.get("a_id")), person_label(post.get("b"), post.get("b_id"))
    why = why_text(lang, post.get("reason") or "", about_a=post.get("serving") == "B")
    if post.get("serving") == "A":
        return t(lang, "roster.serving_a", a=a)
    if post.get("serving") == "B":
        return t(lang, "roster.b_covers", a=a, b=b, why=why)
    return t(lang, "roster.chain_covers", why=why)


def my_post_text(lang: str, post: dict[str, Any]) -> str:
    """A holder's own post, as they read it on their page."""
    a, b = person_label(post.get("a"), post.get("a_id")), person_label(post.get("b"), post.get("b_id"))
    serving, me = post.get("serving"), post.get("as_holder")
    why = why_text(lang, post.get("reason") or "", about_a=serving == "B")
    if serving == "chain":
        return t(lang, "roster.chain_covers", why=why)
    if me == "A":
        return t(lang, "roster.me_a_covered", b=b, why=why) if serving == "B" else \
            t(lang, "roster.me_a_serving", b=b or t(lang, "roster.vacant"))
    return t(lang, "roster.me_b_covering", a=a, why=why) if serving == "B" else t(lang, "roster.me_b_standby", a=a)
