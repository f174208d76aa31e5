"""Staff commands on the volunteer registry and the read side (records, certificate)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time

from pymongo.errors import DuplicateKeyError

from civicgrid_matching.domain.model import DomainError, as_utc
from civicgrid_matching.handlers import Matching, now_utc
from civicgrid_matching.schemas import QualificationVerify, VolunteerCreate, VolunteerRead, VolunteerUpdate


def _doc_fields(body: VolunteerCreate | VolunteerUpdate, *, partial: bool) -> dict:
    data = body.model_dump(mode="python", exclude_unset=partial, exclude={"id"})
    return data


async def register(m: Matching, body: VolunteerCreate, staff: str) -> dict:
    vid = body.id or f"vol-{uuid.uuid4().hex[:12]}"
    t = now_utc()
    doc = {"_id": vid, **_doc_fields(body, partial=False), "qualifications": {}, "stats": {}, "ratings": {},
           "serves": {}, "created_at": t, "updated_at": t, "created_by": staff}
    try:
        await m.cols.volunteers.insert_one(doc)
    except DuplicateKeyError:
        raise DomainError("exists", f"Volunteer {vid} is already registered") from None
    m.index.upsert(doc)
    return doc


async def update(m: Matching, vid: str, body: VolunteerUpdate) -> dict:
    fields = _doc_fields(body, partial=True)
    doc = await m.update_volunteer(vid, {"$set": {**fields, "updated_at": now_utc()}})
    if doc is None:
        raise DomainError("not_found", f"No volunteer {vid}", status=404)
    m.index.upsert(doc)
    return doc


async def verify_qualification(m: Matching, vid: str, body: QualificationVerify, staff: str) -> dict:
    t = now_utc()
    exp = datetime.combine(body.expires_on, time(23, 59, 59), tzinfo=m.tz).astimezone(UTC) if body.expires_on \
        else None
    doc = await m.update_volunteer(vid, {"$set": {
        f"qualifications.{body.code}": {"expires_at": exp, "verified_by": staff, "verified_at": t,
                                        "evidence": body.evidence}, "updated_at": t}})
    if doc is None:
        raise DomainError("not_found", f"No volunteer {vid}", status=404)
    m.index.upsert(doc)
    return doc


async def get(m: Matching, vid: str) -> dict:
    doc = await m.cols.volunteers.find_one({"_id": vid})
    if doc is None:
        raise DomainError("not_found", f"No volunteer {vid}", status=404)
    return doc


def to_read(doc: dict) -> VolunteerRead:
    now = now_utc()
    ratings = list((doc.get("ratings") or {}).values())
    quals = {k: {"expires_at": q.get("expires_at"), "verified_by": q["verified_by"], "verified_at": q["verified_at"],
                 "valid": q.get("expires_at") is None or as_utc(q["expires_at"]) > now}
             for k, q in (doc.get("qualifications") or {}).items()}
    return VolunteerRead(
        id=doc["_id"], name=doc["name"], phone=doc.get("phone"), community=doc["community"], lat=doc["lat"],
        lon=doc["lon"], skills=doc.get("skills", []), qualifications=quals, availability=doc.get("availability", []),
        exceptions=doc.get("exceptions", []), on_duty=doc.get("on_duty", True),
        weekly_hours_cap=doc.get("weekly_hours_cap", 0), languages=doc.get("languages", []),
        party_member=doc.get("party_member", False), work_unit=doc.get("work_unit"), stats=doc.get("stats") or {},
        rating_count=len(ratings), rating_mean=round(sum(ratings) / len(ratings), 3) if ratings else None,
        created_at=doc["created_at"], updated_at=doc["updated_at"])
