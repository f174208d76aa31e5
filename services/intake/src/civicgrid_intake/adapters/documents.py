"""Stored shapes of intake's collections and the ONE upcaster path per collection.

Every document is plain BSON with named fields and a ``schema_version``. A document is read only
through ``upcast(collection, doc)``, which brings an older shape to the current one step by step
(``UPCASTERS[collection][n]`` turns version n into n + 1); nothing else looks at old shapes. The
fields are listed in ``services/intake/README.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from civicgrid_intake.domain.catalogue import written_in
from civicgrid_intake.domain.model import OPEN_STATUSES, StatusState
from civicgrid_intake.domain.submission import Submission

REQUESTS, SERVICES, CALENDAR_YEARS = "requests", "services", "calendar_years"
API_KEYS, ACCESS_LOG = "open311_api_keys", "contact_access_log"

#: what the resident sent and the catalogue said, stored as top-level fields (operators filter on them)
DETAIL_FIELDS = ("service_code", "service_name", "service_name_zh", "service_group", "location", "cell", "description",
                 "attributes", "channel", "media_url", "preferred_time", "device_id", "account_id", "time_limits",
                 "imported_from")
#: fields of the relay and of this module, never shown to a reader
INTERNAL_FIELDS = ("_outbox", "_outbox_pending", "_applied", "schema_version", "version", "idem_hash", "answer")


#: fields older shapes had and the current one has not: the first save of an upcast document drops them
DROPPED_FIELDS: dict[str, tuple[str, ...]] = {REQUESTS: ("_ob",)}
#: fields of the request as received that newer shapes added: a save writes them too, so that a saved
#: document of an older shape holds every field of the ``schema_version`` it is stamped with
ADDED_DETAILS: dict[str, tuple[str, ...]] = {REQUESTS: ("imported_from",)}


def _v0_to_v1_requests(doc: dict[str, Any]) -> dict[str, Any]:
    """Version 0 (no ``schema_version``): written with intake's own relay, whose token ``_ob``
    named the batch marker; some lack ``response_due`` (before the working calendar) or the
    follower list (before merges listed their followers)."""
    doc.pop("_ob", None)
    doc.setdefault("response_due", None)
    doc.setdefault("followers_ids", [])
    doc.setdefault("contact_erased_at", None)
    doc.setdefault("_applied", [])
    doc.setdefault("version", 1)
    return doc


def _v1_to_v2_requests(doc: dict[str, Any]) -> dict[str, Any]:
    """Version 2 adds ``imported_from`` (the legacy system, reference, batch, who and when, and the
    legacy dispatch time of an imported case); every request before it was submitted here."""
    doc.setdefault("imported_from", None)
    return doc


def _in_its_language(texts: dict[str, Any], field: str) -> dict[str, Any]:
    """``texts`` with its one-language ``field`` moved to ``field_zh`` or ``field_en`` (the language
    it is written in), the other one None."""
    out = {k: v for k, v in texts.items() if k != field}
    text = texts.get(field)
    out[f"{field}_zh"] = out[f"{field}_en"] = None
    if text:
        out[f"{field}_{written_in(text)}"] = text
    return out


def _v1_to_v2_services(doc: dict[str, Any]) -> dict[str, Any]:
    """Version 2 holds each question (an attribute's ``description``, its ``datatype_description``
    and its answers' ``name``) in Chinese and English. Version 1 had one text each, which becomes the
    text of the language it is written in (the shipped catalogue's were English, an administrator
    may have written Chinese); the other stays None until an administrator gives it."""
    attributes = []
    for a in doc.get("attributes") or []:
        a = _in_its_language(_in_its_language(a, "description"), "datatype_description")
        a["values"] = [_in_its_language(v, "name") for v in a.get("values") or []]
        attributes.append(a)
    return {**doc, "attributes": attributes}


def _v0_to_v1_plain(doc: dict[str, Any]) -> dict[str, Any]:
    """The small collections' version 0 is version 1 without the field."""
    return doc


CURRENT: dict[str, int] = {REQUESTS: 2, SERVICES: 2, CALENDAR_YEARS: 1, API_KEYS: 1, ACCESS_LOG: 1}
UPCASTERS: dict[str, dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    REQUESTS: {0: _v0_to_v1_requests, 1: _v1_to_v2_requests},
    SERVICES: {0: _v0_to_v1_plain, 1: _v1_to_v2_services},
    CALENDAR_YEARS: {0: _v0_to_v1_plain},
    API_KEYS: {0: _v0_to_v1_plain},
    ACCESS_LOG: {0: _v0_to_v1_plain},
}


def upcast(collection: str, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` in the current shape of ``collection`` (a copy when it was older)."""
    version = int(doc.get("schema_version", 0))
    if version == CURRENT[collection]:
        return doc
    if version > CURRENT[collection]:
        raise ValueError(f"{collection} document {doc.get('_id')!r} has schema_version {version}, newer than this "
                         f"code's {CURRENT[collection]}: upgrade intake")
    doc = dict(doc)
    while version < CURRENT[collection]:
        doc = UPCASTERS[collection][version](doc)
        version += 1
    doc["schema_version"] = version
    return doc


def stamped(collection: str, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the current ``schema_version`` of ``collection`` (every write goes through this)."""
    return {**doc, "schema_version": CURRENT[collection]}


# --------------------------------------------------------------------------- requests <-> Submission


def _aware(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def mutable_fields(sub: Submission) -> dict[str, Any]:
    """Everything a change of the aggregate may touch (a save ``$set``s these)."""
    s = sub.state
    return {
        "status": s.status, "status_notes": s.status_notes, "agency_responsible": s.agency_responsible,
        "assignee_id": s.assignee_id, "area_code": s.area_code, "area_keys": list(s.area_keys),
        "expected_at": s.expected_at, "open": s.status in OPEN_STATUSES, "updated_at": sub.updated_at,
        "duplicate_of": sub.duplicate_of, "followers": sub.followers, "followers_ids": list(sub.followers_ids),
        "history": sub.history, "contact_enc": sub.contact_enc, "contact_erased_at": sub.contact_erased_at,
        "reopen_count": sub.reopen_count, "rating": sub.rating, "_applied": list(sub.applied),
        "schema_version": CURRENT[REQUESTS],
    }


def save_update(sub: Submission) -> dict[str, dict[str, Any]]:
    """The update a save of ``sub`` makes: its changeable fields, the next version, and what an
    older shape had that the current one has not."""
    added = {f: sub.details.get(f) for f in ADDED_DETAILS[REQUESTS]}
    update: dict[str, dict[str, Any]] = {"$set": {**mutable_fields(sub), **added, "version": sub.version + 1}}
    if DROPPED_FIELDS.get(REQUESTS):
        update["$unset"] = {f: "" for f in DROPPED_FIELDS[REQUESTS]}
    return update


def to_document(sub: Submission) -> dict[str, Any]:
    return {"_id": sub.request_id, **{k: sub.details.get(k) for k in DETAIL_FIELDS},
            "received_at": sub.received_at, "response_due": sub.response_due, "reporter_id": sub.reporter_id,
            "answer": sub.answer, "idem_hash": sub.idem_hash, "version": sub.version, **mutable_fields(sub)}


def from_document(doc: dict[str, Any]) -> Submission:
    d = upcast(REQUESTS, doc)
    return Submission(
        request_id=d["_id"], details={k: d.get(k) for k in DETAIL_FIELDS}, received_at=_aware(d["received_at"]),
        state=StatusState(status=d["status"], status_notes=d.get("status_notes"),
                          agency_responsible=d.get("agency_responsible"), assignee_id=d.get("assignee_id"),
                          area_code=d.get("area_code"), area_keys=tuple(d.get("area_keys") or ()),
                          expected_at=_aware(d.get("expected_at"))),
        updated_at=_aware(d.get("updated_at") or d["received_at"]), response_due=_aware(d.get("response_due")),
        duplicate_of=d.get("duplicate_of"), followers_ids=list(d.get("followers_ids") or []),
        history=list(d.get("history") or []), answer=d.get("answer") or {}, idem_hash=d.get("idem_hash"),
        reporter_id=d.get("reporter_id"), contact_enc=d.get("contact_enc"),
        contact_erased_at=_aware(d.get("contact_erased_at")), reopen_count=int(d.get("reopen_count") or 0),
        rating=d.get("rating"), applied=list(d.get("_applied") or []), version=int(d.get("version") or 1))


def view(doc: dict[str, Any]) -> dict[str, Any]:
    """A request as readers see it: the current shape without the relay's and guards' fields."""
    d = upcast(REQUESTS, doc)
    return {k: v for k, v in d.items() if k not in INTERNAL_FIELDS}
