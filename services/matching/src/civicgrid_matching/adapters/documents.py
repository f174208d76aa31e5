"""The stored shape of each aggregate, and the one upcaster path per collection.

Every document is plain BSON with named fields and a ``schema_version`` (the table is in the
service README). ``load(collection, doc)`` is the only place that reads a stored document: it
lifts an older shape step by step (``UPCASTERS[collection][n]`` turns version n into n + 1) and
then builds the aggregate. Version 1 is the shape the first version wrote, without
``schema_version``: maps keyed by data (offer ids, request ids) and one-letter booking fields.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from civicgrid_matching.domain.catalogue import ServiceInfo
from civicgrid_matching.domain.hours import HoursEntry
from civicgrid_matching.domain.match import Match, Visit
from civicgrid_matching.domain.offers import Offer
from civicgrid_matching.domain.schedule import Booking, Schedule
from civicgrid_matching.domain.volunteer import STATS, Qualification, Volunteer
from civicgrid_runtime.store import APPLIED

SCHEMA_VERSION = 2
Doc = dict[str, Any]


def unsafe_key(k: str) -> str:
    """A map key the first version made field-safe, back to the value it stood for."""
    return k.replace("\uff0e", ".").replace("\uff04", "$")


def _at(t: Any) -> Any:
    """BSON dates come back naive (UTC) from a client without ``tz_aware``."""
    return t.replace(tzinfo=UTC) if isinstance(t, datetime) and t.tzinfo is None else t


# ----------------------------------------------------------------------------- matches


def match_doc(m: Match) -> Doc:
    v = m.visit
    return {
        "_id": m.request_id, "schema_version": SCHEMA_VERSION, "version": m.version,
        "service_code": v.service_code, "lat": v.lat, "lon": v.lon, "community": v.community,
        "needed_from": v.needed_from, "needed_hours": v.needed_hours, "recurring": v.recurring,
        "resident_ref": v.resident_ref, "required_qualifications": list(v.required_qualifications),
        "correlation_id": m.correlation_id, "cause_id": m.cause_id, "requested_at": m.requested_at,
        "generation": m.generation, "status": m.status, "winner": m.winner, "accepted_at": m.accepted_at,
        "offers": [{"offer_id": o.offer_id, "volunteer_id": o.volunteer_id, "rank": o.rank, "score": o.score,
                    "distance_m": o.distance_m, "components": dict(o.components), "status": o.status,
                    "offered_at": o.offered_at, "expires_at": o.expires_at} for o in m.offers],
        "asked": list(m.asked), "offered_to": m.offered_to, "next_expiry": m.next_expiry,
        "unmatched": m.unmatched, "no_show": m.no_show, "rating": m.rating, APPLIED: list(m.applied),
    }


def _match_v1(d: Doc) -> Doc:
    offers = [{"offer_id": unsafe_key(k), **o} for k, o in sorted((d.get("offers") or {}).items(),
                                                                   key=lambda kv: kv[1]["rank"])]
    return {**{k: v for k, v in d.items() if k not in ("v", "corr", "cause", "gen", "_batch")},
            "version": d.get("v", 1), "correlation_id": d["corr"], "cause_id": d["cause"],
            "generation": d.get("gen", 1), "offers": offers, "schema_version": 2}


def match_of(d: Doc) -> Match:
    visit = Visit(d["service_code"], d.get("lat"), d.get("lon"), d.get("community"), _at(d["needed_from"]),
                  d["needed_hours"], bool(d.get("recurring")), d.get("resident_ref"),
                  list(d.get("required_qualifications") or []))
    offers = [Offer(o["offer_id"], o["volunteer_id"], o["rank"], o["score"], o["distance_m"], dict(o["components"]),
                    o["status"], _at(o["offered_at"]), _at(o["expires_at"])) for o in d.get("offers") or []]
    return Match(d["_id"], visit, d["correlation_id"], d["cause_id"], _at(d.get("requested_at")),
                 generation=d.get("generation", 1), status=d["status"], offers=offers, asked=list(d.get("asked") or []),
                 winner=d.get("winner"), accepted_at=_at(d.get("accepted_at")), unmatched=d.get("unmatched"),
                 no_show=d.get("no_show"), rating=d.get("rating"), applied=list(d.get(APPLIED) or []),
                 version=d["version"])


# ----------------------------------------------------------------------------- schedules


def schedule_doc(s: Schedule) -> Doc:
    return {"_id": s.volunteer_id, "schema_version": SCHEMA_VERSION, "version": s.version,
            "bookings": [{"request_id": b.request_id, "start": b.start, "hours": b.hours, "weekly": b.weekly,
                          "state": b.state, "changed_at": b.changed_at} for b in s.bookings],
            "updated_at": s.updated_at}


def _schedule_v1(d: Doc) -> Doc:
    bookings = [{"request_id": b["r"], "start": b["s"], "hours": b["h"], "weekly": bool(b.get("w")),
                 "state": b["state"], "changed_at": b.get("at") or d.get("updated_at")}
                for b in (d.get("busy") or {}).values()]
    return {"_id": d["_id"], "schema_version": 2, "version": d.get("v", 1), "bookings": bookings,
            "updated_at": d.get("updated_at")}


def schedule_of(d: Doc) -> Schedule:
    return Schedule(d["_id"], [Booking(b["request_id"], _at(b["start"]), b["hours"], b["weekly"], b["state"],
                                       _at(b["changed_at"])) for b in d.get("bookings") or []],
                    _at(d.get("updated_at")), d["version"])


# ----------------------------------------------------------------------------- volunteers


def volunteer_doc(v: Volunteer) -> Doc:
    return {
        "_id": v.id, "schema_version": SCHEMA_VERSION, "version": v.version, "name": v.name, "phone": v.phone,
        "community": v.community, "lat": v.lat, "lon": v.lon, "skills": list(v.skills),
        "availability": list(v.availability), "exceptions": list(v.exceptions), "on_duty": v.on_duty,
        "weekly_hours_cap": v.weekly_hours_cap, "languages": list(v.languages), "party_member": v.party_member,
        "work_unit": v.work_unit,
        "qualifications": [{"code": q.code, "verified_by": q.verified_by, "verified_at": q.verified_at,
                            "expires_at": q.expires_at, "evidence": q.evidence} for q in v.qualifications.values()],
        "stats": {k: v.stats.get(k, 0) for k in STATS},
        "ratings": [{"request_id": r, "points": p} for r, p in v.ratings.items()],
        "serves": [{"resident_ref": ref, "request_id": r} for ref, r in v.serves.items()],
        "created_at": v.created_at, "updated_at": v.updated_at, "created_by": v.created_by,
    }


def _volunteer_v1(d: Doc) -> Doc:
    return {**d, "schema_version": 2, "version": d.get("v", 1),
            "qualifications": [{"code": c, "evidence": None, "expires_at": None, **q}
                               for c, q in (d.get("qualifications") or {}).items()],
            "ratings": [{"request_id": unsafe_key(r), "points": p} for r, p in (d.get("ratings") or {}).items()],
            "serves": [{"resident_ref": unsafe_key(ref), "request_id": r} for ref, r in (d.get("serves") or {}).items()]}


def volunteer_of(d: Doc) -> Volunteer:
    quals = {q["code"]: Qualification(q["code"], q["verified_by"], _at(q["verified_at"]), _at(q.get("expires_at")),
                                      q.get("evidence")) for q in d.get("qualifications") or []}
    return Volunteer(
        id=d["_id"], name=d.get("name", ""), community=d["community"], lat=d["lat"], lon=d["lon"],
        created_at=_at(d.get("created_at")), updated_at=_at(d.get("updated_at")), created_by=d.get("created_by", ""),
        phone=d.get("phone"), skills=list(d.get("skills") or []), availability=list(d.get("availability") or []),
        exceptions=[{**e, "start": _at(e["start"]), "end": _at(e["end"])} for e in d.get("exceptions") or []],
        on_duty=d.get("on_duty", True), weekly_hours_cap=d.get("weekly_hours_cap", 0),
        languages=list(d.get("languages") or []), party_member=d.get("party_member", False),
        work_unit=d.get("work_unit"), qualifications=quals,
        stats={k: (d.get("stats") or {}).get(k, 0) for k in STATS},
        ratings={r["request_id"]: r["points"] for r in d.get("ratings") or []},
        serves={s["resident_ref"]: s["request_id"] for s in d.get("serves") or []}, version=d["version"])


# ----------------------------------------------------------------------------- hours


HOURS_FIELDS = ("request_id", "volunteer_id", "service_code", "community", "check_in_at", "month", "status",
                "check_out_at", "hours", "note", "delivered_at", "approval", "approved_by", "approved_at", "rating",
                "history")


def hours_doc(e: HoursEntry) -> Doc:
    return {"_id": e.id, "schema_version": SCHEMA_VERSION, "version": e.version,
            **{f: getattr(e, f) for f in HOURS_FIELDS}}


def _hours_v1(d: Doc, tz_month: Callable[[datetime], str]) -> Doc:
    return {**d, "schema_version": 2, "version": d.get("v", 1), "month": d.get("month") or tz_month(d["check_in_at"])}


def hours_of(d: Doc) -> HoursEntry:
    values = {f: d.get(f) for f in HOURS_FIELDS}
    for f in ("check_in_at", "check_out_at", "delivered_at", "approved_at"):
        values[f] = _at(values[f])
    values["history"] = [{**h, "at": _at(h.get("at"))} for h in values["history"] or []]
    return HoursEntry(id=d["_id"], version=d["version"], **values)


# ----------------------------------------------------------------------------- catalogue


def service_doc(s: ServiceInfo) -> Doc:
    return {"_id": s.code, "schema_version": SCHEMA_VERSION, "revision": s.revision,
            "required_qualifications": list(s.required_qualifications), "visit_hours": s.visit_hours,
            "needs_volunteer": s.needs_volunteer, "active": s.active, "name_en": s.name_en, "name_zh": s.name_zh}


def _service_v1(d: Doc) -> Doc:
    return {**d, "schema_version": 2}


def service_of(d: Doc) -> ServiceInfo:
    return ServiceInfo(d["_id"], d["revision"], list(d.get("required_qualifications") or []), d.get("visit_hours"),
                       bool(d.get("needs_volunteer")), d.get("active", True), d.get("name_en"), d.get("name_zh"))


# ----------------------------------------------------------------------------- the one read path


def _month_utc8(t: datetime) -> str:
    from zoneinfo import ZoneInfo

    return _at(t).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")


UPCASTERS: dict[str, dict[int, Callable[[Doc], Doc]]] = {
    "matches": {1: _match_v1},
    "schedules": {1: _schedule_v1},
    "volunteers": {1: _volunteer_v1},
    # the first version wrote ``month`` only at check-out, in the service's zone (Asia/Shanghai
    # by default, the only one deployed with it)
    "hours": {1: lambda d: _hours_v1(d, _month_utc8)},
    "services": {1: _service_v1},
}
READERS: dict[str, Callable[[Doc], Any]] = {"matches": match_of, "schedules": schedule_of,
                                            "volunteers": volunteer_of, "hours": hours_of, "services": service_of}


def upcast(collection: str, doc: Doc) -> Doc:
    """The document in the current shape, whatever shape it was stored in."""
    n = doc.get("schema_version", 1)
    while n < SCHEMA_VERSION:
        doc = UPCASTERS[collection][n](doc)
        n += 1
    return doc


def load(collection: str, doc: Doc) -> Any:
    return READERS[collection](upcast(collection, doc))
