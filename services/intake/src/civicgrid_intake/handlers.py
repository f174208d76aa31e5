"""Intake's command and event handlers: one small method per command or event.

Each write is one document (state + the events it causes, see ``adapters/outbox.py``); each event
handler is idempotent (guarded by the event id in ``_applied``) and keeps a request's history in
order through an optimistic ``version`` check.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from civicgrid_contracts import Envelope, derived_event_id
from civicgrid_contracts.events.intake import (
    RequestClosed,
    RequestMerged,
    RequestRated,
    RequestReceived,
    RequestReopened,
    RequestUnmerged,
)
from civicgrid_contracts.values import Location
from civicgrid_intake.adapters.crypto import ContactVault
from civicgrid_intake.adapters.duplicate_index import DuplicateIndex
from civicgrid_intake.adapters.outbox import TOKEN, RequestRelay
from civicgrid_intake.adapters.repository import ApiKeys, Collections, cell_of
from civicgrid_intake.adapters.writer import SubmissionWriter
from civicgrid_intake.catalogue import Catalogue
from civicgrid_intake.domain.catalogue import AnswerErrors, validate_answers
from civicgrid_intake.domain.commands import RateRequest, SubmitRequest
from civicgrid_intake.domain.errors import (
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    UnknownService,
)
from civicgrid_intake.domain.model import OPEN_STATUSES, StatusState, apply
from civicgrid_intake.settings import IntakeSettings
from civicgrid_runtime.access import AccessTrail
from civicgrid_runtime.auth import Principal
from civicgrid_runtime.cache import DocumentCache
from civicgrid_runtime.calendar import CalendarFollower
from civicgrid_runtime.logging import get_logger
from civicgrid_runtime.store import OUTBOX, PENDING, update_with_events

log = get_logger("civicgrid.intake")
IDEMPOTENCY_NS = uuid.UUID("0b6a1b4e-5c1f-4d8e-9a57-1f3f0c6e2d11")
STATE_KEYS = ("status", "status_notes", "agency_responsible", "assignee_id", "area_code", "area_keys", "expected_at")
CONTACT_ROLES = ("operator", "grid_worker", "supervisor", "admin")


@dataclass
class Submitted:
    answer: dict[str, Any]
    token: str
    replayed: bool
    request_id: str

    def publish_later(self, relay) -> None:
        """A replayed answer: make sure what its request still holds gets published (a new request's
        events went to the relay with its batch)."""
        if self.replayed:
            relay.enqueue([self.request_id])


def _now() -> datetime:
    """Now, to the millisecond: what the store keeps of an instant, so that an event and the document
    written with it hold the same instant (and a deadline computed from it, the same deadline)."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def _state_of(doc: dict[str, Any]) -> StatusState:
    return StatusState(**{k: (tuple(doc.get(k) or ()) if k == "area_keys" else _aware(doc.get(k))
                              if k == "expected_at" else doc.get(k)) for k in STATE_KEYS})


def _state_fields(state: StatusState, at: datetime) -> dict[str, Any]:
    fields = asdict(state)
    fields["area_keys"] = list(state.area_keys)
    return {**fields, "open": state.status in OPEN_STATUSES, "updated_at": at}


def _aware(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def _entry(env: Envelope, status: str, note: str) -> dict[str, Any]:
    return {"event_id": env.id, "type": env.type, "at": env.time, "status": status, "note": note}


class IntakeHandlers:
    def __init__(self, cols: Collections, catalogue: Catalogue, relay: RequestRelay, vault: ContactVault,
                 settings: IntakeSettings, *, duplicates: DuplicateIndex, calendar: CalendarFollower,
                 access: AccessTrail) -> None:
        self.cols = cols
        #: the working calendar every deadline set here is computed on
        self.calendar = calendar
        #: staff reads of contact details, as events for audit's trail
        self.access = access
        self.catalogue = catalogue
        self.relay = relay
        self.vault = vault
        self.settings = settings
        self.source = settings.source
        #: where likely duplicates are looked for (kept to intake's topic by a ``DuplicateFeed``)
        self.duplicates = duplicates
        #: the state of duplicate candidates, read fresh; concurrent submissions' reads go in one query
        self.candidate_states = DocumentCache(cols.requests, max_age=0,
                                              projection={"status": 1, "duplicate_of": 1, "followers": 1})
        self.api_keys = ApiKeys(cols.api_keys)
        relay.link_finisher = self.link_follower
        self.locks = relay.locks
        self.writer = SubmissionWriter(cols, self.duplicates, self.link_followers, relay.enqueue_batch,
                                       batch=settings.flush_batch)

    # ------------------------------------------------------------------ submission

    async def submit(self, cmd: SubmitRequest, *, idempotency_key: str | None = None) -> Submitted:
        svc = self.catalogue.get(cmd.service_code)
        if svc is None or not svc.active:
            raise UnknownService(f"no active service {cmd.service_code!r}; see GET /api/v1/services")
        try:
            answers = validate_answers(svc, cmd.attributes)
        except AnswerErrors as exc:
            raise InvalidRequest(f"Invalid attribute answers: {exc}", errors=exc.errors) from None
        fingerprint = cmd.fingerprint() if idempotency_key else None  # only a key's replay compares it
        if idempotency_key:
            rid = str(uuid.uuid5(IDEMPOTENCY_NS, idempotency_key))
            existing = await self.cols.requests.find_one({"_id": rid}, {"idem_hash": 1, "answer": 1})
            if existing:
                return self._replay(existing, fingerprint)
        else:
            rid = str(uuid.uuid4())
        now = _now()
        loc = cmd.location
        cell = cell_of(loc.lat, loc.lon) if loc.lat is not None else None
        parent: tuple[str, float, int] | None = None
        if cell and self.settings.duplicate_distance_m > 0:
            parent = await self._find_duplicate(cmd.service_code, loc.lat, loc.lon, now)
        contact = cmd.contact.model_dump(exclude_none=True) if cmd.contact else {}
        reporter_id = self.vault.reporter_id(phone=contact.get("phone"), email=contact.get("email"))
        location = Location(lat=loc.lat, lon=loc.lon, building_id=loc.building_id, address_text=loc.address_text,
                            cell=cell)
        received = Envelope.wrap(RequestReceived.starting_clocks(
            self.calendar.calendar, request_id=rid, service_code=svc.code, service_name=svc.name_en, service_group=svc.group,
            handled_by=tuple(svc.handled_by), departments=tuple(svc.departments), needs_volunteer=svc.needs_volunteer,
            time_limits=svc.time_limits, location=location, description=cmd.description, attributes=answers,
            channel=cmd.channel, media_url=cmd.media_url, reporter_id=reporter_id, preferred_time=cmd.preferred_time,
            received_at=now, duplicate_of=parent[0] if parent else None,
        ), source=self.source, event_id=derived_event_id(rid, RequestReceived.event_type), time=now)
        expected = received.data.resolution_due
        events = [received]
        history = [_entry(received, "received", "Request received")]
        status = "received"
        answer: dict[str, Any] = {"request_id": rid, "status": "received", "duplicate_of": None,
                                  "expected_at": expected.isoformat(), "service_code": svc.code,
                                  "message": f"Thank you. Your request was received ({svc.name_zh} / {svc.name_en})."}
        if parent:
            pid, dist, followers = parent
            merged = received.caused(RequestMerged(request_id=rid, into_request_id=pid, distance_m=round(dist, 1),
                                                   followers=followers + 1), source=self.source, time=now)
            events.append(merged)
            status = "merged"
            history.append(_entry(merged, "merged", f"Likely duplicate of {pid}; following it"))
            answer.update(status="merged", duplicate_of=pid, followers=followers + 1,
                          message=f"A request for the same problem nearby ({dist:.0f} m) is already open: "
                                  f"{pid}. You now follow it and will see its progress.")
        doc: dict[str, Any] = {
            "_id": rid, "service_code": svc.code, "service_name": svc.name_en, "service_name_zh": svc.name_zh,
            "service_group": svc.group, "location": location.model_dump(), "cell": cell,
            "description": cmd.description, "attributes": answers, "channel": cmd.channel,
            "media_url": cmd.media_url, "preferred_time": cmd.preferred_time, "device_id": cmd.device_id,
            "account_id": cmd.account_id, "reporter_id": reporter_id,
            "contact_enc": self.vault.encrypt(contact, request_id=rid) if contact else None,
            "received_at": now, "updated_at": now, "expected_at": expected,
            "response_due": received.data.response_due,
            "time_limits": svc.time_limits.model_dump(), "status": status, "status_notes": history[-1]["note"],
            "agency_responsible": None, "assignee_id": None, "area_code": None, "area_keys": [],
            "open": True, "duplicate_of": parent[0] if parent else None, "followers": 1, "followers_ids": [],
            "history": history, "answer": answer, "idem_hash": fingerprint,
            "reopen_count": 0, "rating": None, "version": 1, "_applied": [],
        }
        # the events wait in the batch's marker, which names the document's token
        doc[TOKEN] = uuid.uuid4().hex
        indexed = {"service_code": svc.code, "lat": loc.lat, "lon": loc.lon, "at": now,
                   "merged": parent is not None} if cell else None
        try:
            await self.writer.write(doc, at=now, events=events, indexed=indexed,
                                    parent_id=parent[0] if parent else None)
        except DuplicateKeyError:  # the same Idempotency-Key raced us
            existing = await self.cols.requests.find_one({"_id": rid}, {"idem_hash": 1, "answer": 1})
            return self._replay(existing, fingerprint)
        return Submitted(answer=answer, token=self.vault.request_token(rid), replayed=False, request_id=rid)

    def _replay(self, existing: dict[str, Any], fingerprint: str | None) -> Submitted:
        if existing.get("idem_hash") != fingerprint:
            raise IdempotencyConflict("This Idempotency-Key was used with a different request body.",
                                      field="Idempotency-Key")
        rid = existing["_id"]
        return Submitted(answer=existing["answer"], token=self.vault.request_token(rid), replayed=True,
                         request_id=rid)

    async def _find_duplicate(self, service_code: str, lat: float, lon: float,
                              now: datetime) -> tuple[str, float, int] | None:
        near = self.duplicates.candidates(service_code, lat, lon, now=now)
        states = await self.candidate_states.get_many([cid for _, _, cid in near])
        for dist, _at, cid in near:
            c = states.get(cid)
            if c and c["status"] in OPEN_STATUSES and not c.get("duplicate_of"):
                return cid, dist, int(c.get("followers", 1))
        return None

    async def link_follower(self, rid: str, parent_id: str) -> None:
        async with self.locks.hold(parent_id):
            await self.cols.requests.update_one(
                {"_id": parent_id, "followers_ids": {"$ne": rid}},
                {"$push": {"followers_ids": rid}, "$inc": {"followers": 1, "version": 1},
                 "$set": {"updated_at": _now()}})

    async def link_followers(self, links: list[tuple[str, str]]) -> None:
        """``link_follower`` for a batch of (request id, parent id): one update per parent, all in
        one bulk write; if any parent already lists one of its new followers (a retried batch),
        each link again on its own (idempotent)."""
        if not links:
            return
        by_parent: dict[str, list[str]] = {}
        for rid, pid in links:
            by_parent.setdefault(pid, []).append(rid)
        now = _now()
        async with self.locks.hold_all(by_parent):
            res = await self.cols.requests.bulk_write([
                UpdateOne({"_id": pid, "followers_ids": {"$nin": rids}},
                          {"$push": {"followers_ids": {"$each": rids}}, "$inc": {"followers": len(rids), "version": 1},
                           "$set": {"updated_at": now}})
                for pid, rids in by_parent.items()], ordered=False)
        if res.modified_count < len(by_parent):
            for rid, pid in links:
                await self.link_follower(rid, pid)

    # ------------------------------------------------------------------ reading

    async def get(self, rid: str) -> dict[str, Any]:
        doc = await self.cols.requests.find_one({"_id": rid}, {OUTBOX: 0, PENDING: 0, TOKEN: 0, "_applied": 0})
        if doc is None:
            raise NotFound(f"no request {rid!r}")
        return doc

    async def get_for_resident(self, rid: str, token: str | None) -> dict[str, Any]:
        if not self.vault.check_token(rid, token):
            raise NotFound(f"no request {rid!r} for this token")  # never confirm existence without the token
        return await self.get(rid)

    async def parent_status(self, doc: dict[str, Any]) -> str | None:
        if not doc.get("duplicate_of"):
            return None
        p = await self.cols.requests.find_one({"_id": doc["duplicate_of"]}, {"status": 1})
        return p["status"] if p else None

    async def by_token(self, token: str) -> dict[str, Any]:
        rid = token.rpartition(".")[0]
        if not rid or not self.vault.check_token(rid, token):
            raise NotFound("unknown token")
        return await self.get(rid)

    async def search(self, *, ids: list[str] | None = None, statuses: list[str] | None = None,
                     service_codes: list[str] | None = None, area: str | None = None,
                     start: datetime | None = None, end: datetime | None = None,
                     after: tuple[datetime, str] | None = None, skip: int = 0, limit: int = 50) -> list[dict]:
        if ids:
            docs = await asyncio.gather(*(self.cols.requests.find_one({"_id": i}, {OUTBOX: 0, PENDING: 0, TOKEN: 0,
                                                                                   "_applied": 0}) for i in ids))
            return [d for d in docs if d][skip:skip + limit]
        q: dict[str, Any] = {}
        if statuses:
            q["status"] = {"$in": statuses}
        if service_codes:
            q["service_code"] = {"$in": service_codes}
        if area:
            q["area_keys"] = area
        if start or end:
            q["received_at"] = {**({"$gte": start} if start else {}), **({"$lt": end} if end else {})}
        if after:
            t, i = after
            q["$or"] = [{"received_at": {"$lt": t}}, {"received_at": t, "_id": {"$lt": i}}]
        cur = self.cols.requests.find(q, {OUTBOX: 0, PENDING: 0, TOKEN: 0, "_applied": 0}).sort(
            [("received_at", -1), ("_id", -1)]).skip(skip).limit(limit)
        return await cur.to_list(None)

    # ------------------------------------------------------------------ resident actions

    async def rate(self, rid: str, cmd: RateRequest) -> dict[str, Any]:
        doc = await self.get(rid)
        if doc["status"] != "resolved":
            raise Conflict(f"Only a resolved request can be rated; this one is {doc['status']}.", field="rating")
        now = _now()
        corr = doc["history"][0]["event_id"]
        rated = Envelope.wrap(RequestRated(request_id=rid, rating=cmd.rating, comment=cmd.comment,
                                           reporter_id=doc.get("reporter_id"), rated_at=now),
                              source=self.source, correlation_id=corr, time=now)
        if cmd.rating == "unsatisfied":
            count = int(doc.get("reopen_count", 0)) + 1
            follow = rated.caused(RequestReopened(request_id=rid, reason="The resident was not satisfied"
                                                  + (f": {cmd.comment}" if cmd.comment else ""),
                                                  reopened_at=now, reopen_count=count), source=self.source, time=now)
            status, note = "reopened", "Reopened: the resident was not satisfied"
        else:
            count = int(doc.get("reopen_count", 0))
            follow = rated.caused(RequestClosed(request_id=rid, reason=f"Rated {cmd.rating}", closed_at=now),
                                  source=self.source, time=now)
            status, note = "closed", f"Closed after the resident's rating ({cmd.rating})"
        await self.relay.mark(rid)
        async with self.locks.hold(rid):
            out = await self._rate_write(rid, doc, cmd, status, note, count, now, rated, follow)
        if out is None:
            raise Conflict("The request changed meanwhile; read it again.", field="rating")
        self.relay.enqueue([rid])
        return out

    async def _rate_write(self, rid, doc, cmd, status, note, count, now, rated, follow):
        return await update_with_events(
            self.cols.requests, None, filter={"_id": rid, "status": "resolved", "version": doc["version"]},
            update={"$set": {"status": status, "status_notes": note, "open": status in OPEN_STATUSES,
                             "rating": {"rating": cmd.rating, "comment": cmd.comment, "at": now},
                             "reopen_count": count, "updated_at": now},
                    "$push": {"history": {"$each": [_entry(rated, doc["status"], f"Rated {cmd.rating}"),
                                                    _entry(follow, status, note)]}},
                    "$inc": {"version": 1}},
            events=[rated, follow])

    async def erase_contact(self, rid: str) -> dict[str, Any]:
        now = _now()
        async with self.locks.hold(rid):
            doc = await self._erase_write(rid, now)
        if doc is None:
            raise NotFound(f"no request {rid!r}")
        return {"request_id": rid, "contact_erased_at": now.isoformat()}

    async def _erase_write(self, rid: str, now: datetime):
        return await self.cols.requests.find_one_and_update(
            {"_id": rid},
            {"$set": {"contact_enc": None, "contact_erased_at": now, "updated_at": now},
             "$push": {"history": {"event_id": None, "type": "intake.contact_erased", "at": now, "status": None,
                                   "note": "Contact details erased at the resident's request"}}})

    # ------------------------------------------------------------------ staff actions

    async def unmerge(self, rid: str, staff: Principal, reason: str) -> dict[str, Any]:
        doc = await self.get(rid)
        parent_id = doc.get("duplicate_of")
        if not parent_id:
            raise Conflict("This request is not merged into another one.", field="duplicate_of")
        now = _now()
        corr = doc["history"][0]["event_id"]
        env = Envelope.wrap(RequestUnmerged(request_id=rid, from_request_id=parent_id, staff_id=staff.sub,
                                            reason=reason), source=self.source, correlation_id=corr, time=now)
        new_status = "received" if doc["status"] == "merged" else doc["status"]
        await self.relay.mark(rid)
        async with self.locks.hold(rid):
            out = await update_with_events(
                self.cols.requests, None, filter={"_id": rid, "duplicate_of": parent_id},
                update={"$set": {"duplicate_of": None, "status": new_status, "status_notes": f"Unmerged: {reason}",
                                 "updated_at": now},
                        "$push": {"history": _entry(env, new_status, f"Unmerged from {parent_id}: {reason}")},
                        "$inc": {"version": 1}}, events=[env])
        if out is None:
            raise Conflict("The request changed meanwhile; read it again.")
        self.relay.enqueue([rid])
        for _ in range(20):  # optimistic removal from the parent's follower list (no $pull with conditions)
            p = await self.cols.requests.find_one({"_id": parent_id}, {"followers_ids": 1, "version": 1})
            if p is None or rid not in (p.get("followers_ids") or []):
                break
            ids = [i for i in p["followers_ids"] if i != rid]
            async with self.locks.hold(parent_id):
                r = await self.cols.requests.update_one(
                    {"_id": parent_id, "version": p["version"]},
                    {"$set": {"followers_ids": ids, "followers": len(ids) + 1, "updated_at": now},
                     "$inc": {"version": 1}})
            if r.modified_count:
                break
        loc = doc.get("location") or {}
        if doc.get("cell") and loc.get("lat") is not None:  # other replicas follow its RequestUnmerged
            self.duplicates.add(rid, service_code=doc["service_code"], lat=loc["lat"], lon=loc["lon"],
                                at=_aware(doc["received_at"]), merged=False)
        return out

    async def read_contact(self, rid: str, staff: Principal, reason: str) -> dict[str, Any]:
        """The reporter's contact details; the read is recorded (who, why) and on its way to audit first."""
        doc = await self.cols.requests.find_one({"_id": rid}, {"contact_enc": 1, "area_code": 1,
                                                               "contact_erased_at": 1})
        if doc is None:
            raise NotFound(f"no request {rid!r}")
        if not staff.covers(doc.get("area_code")):  # a community supervisor's scope too, not only a grid worker's
            raise Forbidden(f"Request {rid} is not in your area {staff.area!r}.")
        erased = bool(doc.get("contact_erased_at"))
        event = await self.access.contact_read(staff, rid, reason, erased=erased)
        contact = self.vault.decrypt(doc["contact_enc"], request_id=rid) if doc.get("contact_enc") else None
        return {"request_id": rid, "contact": contact, "erased": erased, "logged_at": event.time.isoformat()}

    async def access_log(self, rid: str) -> list[dict[str, Any]]:
        return await self.access.contact_reads(rid)

    # ------------------------------------------------------------------ lifecycle events

    async def apply_events(self, envs: list[Envelope]) -> None:
        """Fold a batch of lifecycle events (each request's in order) with one read and one bulk
        write, holding the requests' locks from the read to the write (no race inside this
        process). A request whose write still lost a race (another replica moved its version) goes
        again through ``apply_event``, which skips what was applied; the others are done."""
        by_rid: dict[str, list[Envelope]] = {}
        for env in envs:
            by_rid.setdefault(env.subject, []).append(env)
        async with self.locks.hold_all(by_rid):
            docs = await self.cols.requests.find(
                {"_id": {"$in": list(by_rid)}},
                {**{k: 1 for k in STATE_KEYS}, "version": 1, "_applied": 1}).to_list(None)
            ops, first_new = [], {}
            for doc in docs:
                applied = set(doc.get("_applied") or ())
                state, ids, history = _state_of(doc), [], []
                for env in by_rid[doc["_id"]]:
                    if env.id in applied:
                        continue
                    applied.add(env.id)
                    ids.append(env.id)
                    res = apply(state, env)
                    if res is not None:
                        state, entry = res
                        history.append(entry)
                        last = env.time
                if not ids:
                    continue
                update: dict[str, Any] = {"$push": {"_applied": {"$each": ids}}, "$inc": {"version": 1}}
                if history:
                    update["$push"]["history"] = {"$each": history}
                    update["$set"] = _state_fields(state, last)
                ops.append(UpdateOne({"_id": doc["_id"], "version": doc["version"]}, update))
                first_new[doc["_id"]] = ids[0]
            if not ops:
                return
            res = await self.cols.requests.bulk_write(ops, ordered=False)
            if res.modified_count == len(ops):
                return
            after = await self.cols.requests.find({"_id": {"$in": list(first_new)}}, {"_applied": 1}).to_list(None)
            done = {d["_id"] for d in after if first_new[d["_id"]] in (d.get("_applied") or ())}
        for env in envs:
            if env.subject in first_new and env.subject not in done:
                await self.apply_event(env)

    async def apply_event(self, env: Envelope) -> bool:
        """Fold one lifecycle event into the request's status; idempotent, in order per request."""
        rid = env.subject
        for _ in range(50):
            doc = await self.cols.requests.find_one({"_id": rid, "_applied": {"$ne": env.id}},
                                                    {**{k: 1 for k in STATE_KEYS}, "version": 1})
            if doc is None:
                return False  # not ours (another deployment's request) or already applied
            state = _state_of(doc)
            res = apply(state, env)
            update: dict[str, Any] = {"$push": {"_applied": env.id}, "$inc": {"version": 1}}
            if res is not None:
                new, entry = res
                update["$set"] = _state_fields(new, env.time)
                update["$push"]["history"] = entry
            async with self.locks.hold(rid):
                r = await self.cols.requests.update_one({"_id": rid, "version": doc["version"],
                                                         "_applied": {"$ne": env.id}}, update)
            if r.modified_count:
                return True
        raise RuntimeError(f"request {rid}: could not apply {env.type} {env.id} (concurrent updates)")
