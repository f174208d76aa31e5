"""Matching's command and event handlers.

The request's match document (collection ``matches``, ``_id`` = request id) is the aggregate of one
request: its open offers, who was asked, the ``winner`` and the outgoing events (outbox). Every
change to it is one conditional single-document update guarded by its version ``v`` (and, for an
accept, by ``winner: None``: the first accept wins, every later one finds the filter unmatched).
Bookings live in the volunteer's schedule document (see ``adapters.store.Schedules``): an accept
first *holds* the slot there atomically, then claims the request, then confirms the booking (or
releases it when another volunteer won). ``reconcile`` settles holds left by a crash.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from civicgrid_contracts import Envelope
from civicgrid_contracts.envelope import EventPayload, derived_event_id
from civicgrid_contracts.events import catalogue as cat_ev
from civicgrid_contracts.events import grid as grid_ev
from civicgrid_contracts.events import intake as intake_ev
from civicgrid_contracts.events import matching as ev
from civicgrid_matching.adapters.store import Collections, Locks, Schedules, active_bookings
from civicgrid_matching.domain.index import Candidate, MatchQuery, VolunteerIndex, why_text
from civicgrid_matching.domain.model import RATING_POINTS, DomainError, as_utc, key_safe
from civicgrid_matching.settings import MatchingSettings
from civicgrid_runtime.bus import Delivery
from civicgrid_runtime.faults import crash_point
from civicgrid_runtime.logging import get_logger
from civicgrid_runtime.store import OutboxRelay, mark_applied, not_applied, update_with_events

log = get_logger("civicgrid.matching")
OFFER_NS = uuid.UUID("2b0c7f52-8a6e-4d0f-9a3c-1f6f0e5d9b21")
OPEN = "open"
#: the batch that wrote a match document (``match_new_requests``)
BATCHED = "_batch"
#: the consumed events matching acts on (the topics carry others, such as RequestAssigned)
HANDLED = (grid_ev.VolunteerRequested, grid_ev.RequestResolved, grid_ev.RequestRejected, cat_ev.ServiceDefined,
           intake_ev.RequestRated)


def offer_id(request_id: str, gen: int, volunteer_id: str) -> str:
    """Readable, deterministic and key-safe; names its request, so no lookup table is needed."""
    return f"{key_safe(request_id)}~{gen}~{volunteer_id}"


def request_of(oid: str) -> str:
    return oid.rsplit("~", 2)[0].replace("\uff0e", ".").replace("\uff04", "$")


def hours_entry_id(request_id: str, volunteer_id: str) -> str:
    return str(uuid.uuid5(OFFER_NS, f"hours|{request_id}|{volunteer_id}"))


def now_utc() -> datetime:
    return datetime.now(UTC)


class Matching:
    """The service's application layer; built once by ``bootstrap``."""

    def __init__(self, cols: Collections, relay: OutboxRelay | None, index: VolunteerIndex,
                 settings: MatchingSettings) -> None:
        self.cols = cols
        self.relay = relay
        self.index = index
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)
        self.locks = Locks(cols.locks)
        self.schedules = Schedules(cols, self.tz, self.locks)
        self.source = settings.source
        self.catalogue: dict[str, dict] = {}
        self._vol_seen: datetime | None = None
        self._sched_seen: datetime | None = None

    # ================================================================== index and catalogue

    async def load(self) -> None:
        """Build the index and the catalogue cache from the store (start-up)."""
        async for doc in self.cols.services.find({}):
            self.catalogue[doc["_id"]] = doc
        await self.refresh_index()

    async def refresh_index(self) -> int:
        """Pick up volunteers and schedules changed since the last look (also other replicas')."""
        n = 0
        f = {"updated_at": {"$gte": self._vol_seen}} if self._vol_seen else {}
        async for doc in self.cols.volunteers.find(f, {"name": 0, "phone": 0}):
            self.index.upsert(doc)
            self._vol_seen = max(self._vol_seen or doc["updated_at"], doc["updated_at"])
            n += 1
        f = {"updated_at": {"$gte": self._sched_seen}} if self._sched_seen else {}
        async for doc in self.cols.schedules.find(f):
            self.index.set_bookings(doc["_id"], active_bookings(doc))
            self._sched_seen = max(self._sched_seen or doc["updated_at"], doc["updated_at"])
        return n

    async def _reindex_volunteer(self, vid: str) -> None:
        doc = await self.cols.volunteers.find_one({"_id": vid}, {"name": 0, "phone": 0})
        if doc:
            self.index.upsert(doc)

    async def _reindex_schedule(self, vid: str) -> None:
        self.index.set_bookings(vid, active_bookings(await self.schedules.get(vid)))

    # ================================================================== consumed events

    async def handle_batch(self, batch: list[Delivery]) -> None:
        """One partition's batch, in order. New volunteer requests take the batched fast path
        (``match_new_requests``); everything else is applied one event at a time."""
        batch = [d for d in batch if isinstance(d.envelope.data, HANDLED)]
        done = await self.match_new_requests(self._fast_path_candidates(batch))
        for d in batch:
            p = d.envelope.data
            if d.envelope.id in done:
                continue
            if isinstance(p, grid_ev.VolunteerRequested):
                await self.on_volunteer_requested(d.envelope)
            elif isinstance(p, (grid_ev.RequestResolved, grid_ev.RequestRejected)):
                await self.on_request_closed(d.envelope)
            elif isinstance(p, cat_ev.ServiceDefined):
                await self.on_service_defined(p)
            elif isinstance(p, intake_ev.RequestRated):
                await self.on_request_rated(d.envelope)

    @staticmethod
    def _fast_path_candidates(batch: list[Delivery]) -> list[Envelope]:
        """VolunteerRequested events that are the first event of their request in this batch and the
        only request for it (so handling them first keeps every request's order). ``batch`` holds
        only events matching handles: grid publishes RequestAssigned just before VolunteerRequested,
        and counting it kept every request of the real flow off the fast path."""
        seen: set[str] = set()
        count: dict[str, int] = {}
        first: list[Envelope] = []
        for d in batch:
            rid = d.envelope.subject
            if isinstance(d.envelope.data, grid_ev.VolunteerRequested):
                count[rid] = count.get(rid, 0) + 1
                if rid not in seen:
                    first.append(d.envelope)
            if isinstance(d.envelope.data, cat_ev.ServiceDefined):
                return []  # the catalogue changes inside this batch: keep strict order
            seen.add(rid)
        return [e for e in first if count[e.subject] == 1]

    async def match_new_requests(self, envs: list[Envelope]) -> set[str]:
        """Batched matching of requests the store has never seen: the offers' deadlines
        (``insert_many``), the match documents (``insert_many``), one publish of every event.

        Nothing else is written for a crash: the VolunteerRequested events are committed only after
        this returns, so a crash (or a failed publish) delivers them again, and the one-by-one path,
        finding the document such an event wrote unchanged since, publishes its events again
        (``_first_events``: same ids, harmless). A document that already exists (a redelivery, a
        re-request, another member's delivery during a rebalance) goes to that path too.
        """
        if not envs:
            return set()
        # no read of existing ids: the store's unique _id refuses those (``$in`` is a full scan on
        # FerretDB), and they go to the one-by-one path below
        rids = [e.subject for e in envs]
        t = now_utc()
        plans = []
        for env in envs:
            p: grid_ev.VolunteerRequested = env.data  # type: ignore[assignment]
            state = self._new_state(env, gen=1)
            res = self.index.match(self._query(state), limit=self.settings.offers_at_once + 4) \
                if p.location.lat is not None and p.location.lon is not None else None
            plans.append((env, state, res))
        # bookings were checked against the index (kept current from the store); the store itself
        # re-checks atomically when a volunteer accepts
        bid = uuid.uuid4().hex
        docs, events = [], []
        for env, state, res in plans:
            cands = res.candidates[: self.settings.offers_at_once] if res else []
            for n, c in enumerate(cands):
                c.rank = n + 1
            evs = self._apply_candidates(env, state, cands, res, t)
            docs.append({"_id": env.subject, **state, "v": 1, "_applied": [env.id], BATCHED: bid})
            events.extend(evs)
        deadlines = [{"_id": d["_id"], "at": d["next_expiry"]} for d in docs if d["status"] == OPEN]
        if deadlines:  # before the documents: a deadline without its document is simply dropped later
            try:
                await self.cols.deadlines.insert_many(deadlines, ordered=False)
            except BulkWriteError:
                pass  # already there (a redelivery): the expiry job re-reads the match document anyway
        inserted = set(rids)
        try:
            await self.cols.matches.insert_many(docs, ordered=False)
        except BulkWriteError as exc:  # someone else created some of them meanwhile: slow path for those
            failed = {docs[e["index"]]["_id"] for e in exc.details.get("writeErrors", [])}
            inserted -= failed
            events = [e for e in events if e.subject not in failed]
        crash_point("matching.after_batch_insert")
        await self.relay._publisher.publish_many(events) if self.relay else None  # noqa: SLF001
        return {e.id for e in envs if e.subject in inserted}

    def _first_events(self, doc: dict) -> list[Envelope]:
        """Rebuild the events a new request's document caused (same ids, same payloads): the
        documents need not store them a second time."""
        def wrap(payload: EventPayload, disc: str) -> Envelope:
            return Envelope.wrap(payload, source=self.source, correlation_id=doc["corr"], causation_id=doc["cause"],
                                 event_id=derived_event_id(doc["cause"], payload.event_type, disc))

        rid = doc["_id"]
        out = [wrap(ev.VolunteerOffered(request_id=rid, offer_id=k, volunteer_id=o["volunteer_id"], rank=o["rank"],
                                        score=o["score"], distance_m=o["distance_m"], expires_at=o["expires_at"],
                                        offered_at=o["offered_at"]), k)
               for k, o in sorted(doc.get("offers", {}).items(), key=lambda kv: kv[1]["rank"])]
        if doc.get("unmatched"):
            u = doc["unmatched"]
            out.append(wrap(ev.VolunteerUnmatched(request_id=rid, reason=u["reason"],
                                                  candidates_considered=u["considered"], unmatched_at=u["at"]), ""))
        return out

    async def republish_batches(self, older_than: timedelta = timedelta(seconds=10)) -> int:
        """Publish the events of batches whose marker a version before this one left behind (it
        wrote a marker per batch; this one needs none)."""
        n = 0
        for marker in await self.cols.batches.find({"at": {"$lt": now_utc() - older_than}}).to_list(None):
            docs = [d for d in await asyncio.gather(*(self.cols.matches.find_one(
                {"_id": i, BATCHED: marker["_id"]}) for i in marker["ids"])) if d]
            evs = [e for d in docs for e in self._first_events(d)]
            if evs and self.relay:
                await self.relay._publisher.publish_many(evs)  # noqa: SLF001
            await self.cols.batches.delete_one({"_id": marker["_id"]})
            n += len(evs)
        return n

    async def on_service_defined(self, p: cat_ev.ServiceDefined) -> None:
        doc = {"required_qualifications": list(p.required_qualifications), "visit_hours": p.visit_hours,
               "needs_volunteer": p.needs_volunteer, "active": p.active, "revision": p.revision,
               "name_en": p.name_en, "name_zh": p.name_zh}
        try:
            await self.cols.services.update_one({"_id": p.service_code, "revision": {"$lt": p.revision}},
                                                {"$set": doc}, upsert=True)
        except DuplicateKeyError:
            pass  # a newer (or the same) revision is already stored: last revision wins
        stored = await self.cols.services.find_one({"_id": p.service_code})
        if stored:
            self.catalogue[p.service_code] = stored

    async def on_volunteer_requested(self, env: Envelope) -> None:
        doc = await self.cols.matches.find_one({"_id": env.data.request_id}, {"_id": 1})
        if doc is None:  # a new request: the insert itself is the atomic step (unique _id)
            return await self._on_volunteer_requested(env)
        async with self.locks.hold(f"m|{env.data.request_id}"):
            return await self._on_volunteer_requested(env)

    async def _on_volunteer_requested(self, env: Envelope) -> None:
        p: grid_ev.VolunteerRequested = env.data  # type: ignore[assignment]
        rid = p.request_id
        for _ in range(20):
            doc = await self.cols.matches.find_one({"_id": rid})
            if doc and env.id in doc.get("_applied", []):
                if doc.get(BATCHED) and doc.get("v") == 1 and self.relay:
                    # written by the batched path, unchanged since: its publish may never have happened
                    await self.relay._publisher.publish_many(self._first_events(doc))  # noqa: SLF001
                return
            if doc and doc["status"] in (OPEN, "accepted", "delivered"):
                # already being served: remember the event, change nothing else
                await self.cols.matches.update_one({"_id": rid, **not_applied(env.id)}, mark_applied(env.id))
                return
            state = self._new_state(env, gen=(doc or {}).get("gen", 0) + 1)
            t = now_utc()
            res = None
            cands: list[Candidate] = []
            if p.location.lat is not None and p.location.lon is not None:
                res = await self._candidates(state, self.settings.offers_at_once, set())
                cands = res.candidates
            events = self._apply_candidates(env, state, cands, res, t)
            update = {"$set": state, "$inc": {"v": 1}, **mark_applied(env.id)}
            try:
                filt = {"_id": rid, "v": doc["v"]} if doc else {"_id": rid, **not_applied(env.id)}
                new = await update_with_events(self.cols.matches, self.relay, filter=filt, update=update,
                                               events=events, upsert=doc is None,
                                               crash_point_name="matching.after_offer_write")
            except DuplicateKeyError:
                continue
            if new is None:
                continue  # the document changed under us: read again
            await self._sync_offers(new)
            return
        raise RuntimeError(f"could not apply {env.id}: match document kept changing")

    async def on_request_closed(self, env: Envelope) -> None:
        async with self.locks.hold(f"m|{env.data.request_id}"):
            return await self._on_request_closed(env)

    async def _on_request_closed(self, env: Envelope) -> None:
        """Resolved or rejected: withdraw open offers; release an undelivered one-off booking."""
        rid = env.data.request_id
        rejected = isinstance(env.data, grid_ev.RequestRejected)
        for _ in range(20):
            doc = await self.cols.matches.find_one({"_id": rid})
            if doc is None or env.id in doc.get("_applied", []):
                return
            t = now_utc()
            events = self._withdraw_open(doc, "request rejected" if rejected else "request resolved", t,
                                         cause=env)
            status = doc["status"] if doc["status"] == "delivered" else "closed"
            upd = {"$set": {"status": status, "next_expiry": None, **{f"offers.{k}.status": "withdrawn"
                                                                        for k in self._open(doc)}},
                   "$inc": {"v": 1}, **mark_applied(env.id)}
            new = await update_with_events(self.cols.matches, self.relay, filter={"_id": rid, "v": doc["v"]},
                                           update=upd, events=events)
            if new is None:
                continue
            await self._sync_offers(new)
            winner = doc.get("winner")
            if winner and doc["status"] != "delivered" and (rejected or not doc.get("recurring")):
                await self.schedules.set_state(winner, rid, "released")
                await self._reindex_schedule(winner)
            return
        raise RuntimeError(f"could not apply {env.id}: match document kept changing")

    async def on_request_rated(self, env: Envelope) -> None:
        async with self.locks.hold(f"m|{env.data.request_id}"):
            await self._on_request_rated(env)

    async def _on_request_rated(self, env: Envelope) -> None:
        p: intake_ev.RequestRated = env.data  # type: ignore[assignment]
        doc = await self.cols.matches.find_one({"_id": p.request_id}, {"winner": 1, "_applied": 1})
        if doc is None or not doc.get("winner"):
            return  # not a volunteer's request
        points = RATING_POINTS[p.rating]
        vid = doc["winner"]
        # $set keyed by request: applying the same rating twice changes nothing; a later rating wins
        await self.update_volunteer(vid, {"$set": {f"ratings.{key_safe(p.request_id)}": points,
                                                   "updated_at": now_utc()}})
        await self.cols.hours.update_one({"_id": hours_entry_id(p.request_id, vid)},
                                         {"$set": {"rating": p.rating}})
        await self.cols.matches.update_one({"_id": p.request_id, **not_applied(env.id)},
                                           {"$set": {"rating": p.rating}, **mark_applied(env.id)})
        await self._reindex_volunteer(vid)

    # ================================================================== matching helpers

    def _new_state(self, env: Envelope, gen: int) -> dict:
        p: grid_ev.VolunteerRequested = env.data  # type: ignore[assignment]
        svc = self.catalogue.get(p.service_code) or {}
        return {
            "service_code": p.service_code, "lat": p.location.lat, "lon": p.location.lon,
            "community": p.community, "needed_from": p.needed_from, "needed_hours": p.needed_hours,
            "recurring": p.recurring_weekly, "resident_ref": p.resident_ref,
            "required_qualifications": list(svc.get("required_qualifications", [])),
            "corr": env.correlationid, "cause": env.id, "gen": gen, "winner": None, "asked": [],
            "offers": {}, "offered_to": [], "requested_at": p.requested_at,
        }

    def _apply_candidates(self, env: Envelope, state: dict, cands: list[Candidate], res, t: datetime) -> list[Envelope]:
        """Put the offers (or the unmatched verdict) into ``state``; return the events they cause."""
        offers, events = self._offers(state, cands, t, env)
        state["offers"] = offers
        state["asked"] = [c.volunteer_id for c in cands]
        state["offered_to"] = sorted(state["asked"])
        if cands:
            state["status"] = OPEN
            state["next_expiry"] = min(o["expires_at"] for o in offers.values())
        else:
            state["status"] = "unmatched"
            state["next_expiry"] = None
            reason = res.reason() if res is not None else "the request has no coordinates"
            considered = res.considered if res else 0
            state["unmatched"] = {"reason": reason, "considered": considered, "at": t}
            events.append(env.caused(ev.VolunteerUnmatched(
                request_id=env.subject, reason=reason, candidates_considered=considered,
                unmatched_at=t), source=self.source))
        return events

    def _verified(self, state: dict, cands: list[Candidate], scheds: dict, want: int) -> list[Candidate]:
        """Drop candidates whose stored schedule conflicts (booked meanwhile, possibly elsewhere)."""
        q = self._query(state)
        ok: list[Candidate] = []
        for c in cands:
            i = self.index.pos[c.volunteer_id]
            sched = scheds.get(c.volunteer_id)
            if self.schedules.conflict(sched, state.get("_id", ""), q.start, q.hours, q.recurring,
                                       float(self.index.hours_cap[i])) is None:
                c.rank = len(ok) + 1
                ok.append(c)
            else:
                self.index.set_bookings(c.volunteer_id, active_bookings(sched))
            if len(ok) >= want:
                break
        return ok

    def _query(self, state: dict) -> MatchQuery:
        return MatchQuery(lat=state["lat"], lon=state["lon"], service_code=state["service_code"],
                          start=as_utc(state["needed_from"]), hours=state["needed_hours"],
                          required_qualifications=tuple(state.get("required_qualifications", ())),
                          resident_ref=state.get("resident_ref"), recurring=bool(state.get("recurring")),
                          distance_limit_m=self.settings.distance_limit_m)

    async def _candidates(self, state: dict, want: int, exclude: set[str]):
        """Rank in memory, then verify the final few against the schedules in the store."""
        q = self._query(state)
        res = self.index.match(q, limit=want + 4, exclude=exclude)
        if not res.candidates:
            return res
        scheds = await self.schedules.many([c.volunteer_id for c in res.candidates])
        res.candidates = self._verified(state, res.candidates, scheds, want)
        return res

    def _event(self, doc: dict, payload: EventPayload, disc: str, t: datetime) -> Envelope:
        return Envelope.wrap(payload, source=self.source, correlation_id=doc.get("corr"),
                             causation_id=doc.get("cause"),
                             event_id=derived_event_id(f"{payload.request_id}|{doc.get('gen', 1)}",
                                                       payload.event_type, disc), time=t)

    def _offers(self, state: dict, cands: Sequence[Candidate], t: datetime, cause: Envelope | None,
                rank_from: int = 1) -> tuple[dict, list[Envelope]]:
        rid = state.get("_id") or (cause.data.request_id if cause else "")
        expires = t + timedelta(seconds=self.settings.offer_ttl_seconds)
        offers, events = {}, []
        for n, c in enumerate(cands):
            oid = offer_id(rid, state["gen"], c.volunteer_id)
            offers[oid] = {"volunteer_id": c.volunteer_id, "rank": rank_from + n, "score": round(c.score, 6),
                           "distance_m": round(c.distance_m, 1),
                           "components": {k: round(v, 4) for k, v in c.components.items()},
                           "status": OPEN, "offered_at": t, "expires_at": expires}
            payload = ev.VolunteerOffered(request_id=rid, offer_id=oid, volunteer_id=c.volunteer_id,
                                          rank=rank_from + n, score=round(c.score, 6),
                                          distance_m=round(c.distance_m, 1), expires_at=expires, offered_at=t)
            events.append(cause.caused(payload, source=self.source, discriminator=oid) if cause else
                          self._event(state, payload, oid, t))
        return offers, events

    @staticmethod
    def _open(doc: dict) -> list[str]:
        return [k for k, o in (doc.get("offers") or {}).items() if o["status"] == OPEN]

    def _withdraw_open(self, doc: dict, reason: str, t: datetime, cause: Envelope | None = None,
                       keep: str | None = None) -> list[Envelope]:
        out = []
        for k in self._open(doc):
            if k == keep:
                continue
            p = ev.OfferWithdrawn(request_id=doc["_id"], offer_id=k, volunteer_id=doc["offers"][k]["volunteer_id"],
                                  reason=reason, withdrawn_at=t)
            out.append(cause.caused(p, source=self.source, discriminator=k) if cause else self._event(doc, p, k, t))
        return out

    async def _top_up(self, doc: dict, t: datetime, closing: set[str]) -> tuple[dict, list[Envelope]]:
        """After offers closed (declined/expired): ask the next candidates, or report unmatched."""
        still_open = [k for k in self._open(doc) if k not in closing]
        need = self.settings.offers_at_once - len(still_open)
        state = {**doc}
        sets: dict[str, Any] = {}
        events: list[Envelope] = []
        if need > 0 and doc.get("lat") is not None:
            res = await self._candidates(state, need, set(doc.get("asked", [])))
            rank_from = len(doc.get("offers") or {}) + 1
            offers, events = self._offers(state, res.candidates, t, None, rank_from=rank_from)
            for k, o in offers.items():
                sets[f"offers.{k}"] = o
            asked = list(doc.get("asked", [])) + [c.volunteer_id for c in res.candidates]
            sets["asked"] = asked
            open_expiries = [doc["offers"][k]["expires_at"] for k in still_open] + [
                o["expires_at"] for o in offers.values()]
            considered, reason = res.considered, res.reason()
        else:
            open_expiries = [doc["offers"][k]["expires_at"] for k in still_open]
            considered, reason = 0, "the request has no coordinates"
        if open_expiries:
            sets["next_expiry"] = min(open_expiries)
        else:
            sets["next_expiry"] = None
            sets["status"] = "unmatched"
            events.append(self._event(doc, ev.VolunteerUnmatched(
                request_id=doc["_id"], reason=f"every offer was declined or expired; {reason}",
                candidates_considered=len(doc.get("asked", [])) + considered, unmatched_at=t), "unmatched", t))
        return sets, events

    async def _sync_offers(self, doc: dict) -> None:
        """Keep ``offered_to`` (volunteers with an open offer; indexed for "my offers") in step."""
        want = sorted({doc["offers"][k]["volunteer_id"] for k in self._open(doc)}) if not doc.get("winner") else []
        if want != doc.get("offered_to"):
            await self.cols.matches.update_one({"_id": doc["_id"]}, {"$set": {"offered_to": want}})
        await self._deadline(doc)

    async def _deadline(self, doc: dict) -> None:
        """``deadlines`` holds one small document per request with open offers, so the expiry job never
        scans the history of every request (FerretDB does not use secondary indexes)."""
        if doc.get("status") == OPEN and doc.get("next_expiry"):
            await self.cols.deadlines.update_one({"_id": doc["_id"]}, {"$set": {"at": doc["next_expiry"]}}, upsert=True)
        else:
            await self.cols.deadlines.delete_one({"_id": doc["_id"]})

    # ================================================================== volunteers' commands

    async def _offer_doc(self, vid: str, oid: str) -> tuple[dict, dict]:
        doc = await self.cols.matches.find_one({"_id": request_of(oid)})
        o = ((doc or {}).get("offers") or {}).get(oid)
        if o is None or o["volunteer_id"] != vid:
            raise DomainError("not_found", "No such offer for you", status=404)
        return doc, o

    async def accept(self, vid: str, oid: str) -> dict:
        async with self.locks.hold(f"m|{request_of(oid)}"):
            return await self._accept(vid, oid)

    async def _accept(self, vid: str, oid: str) -> dict:
        """First accept wins. Holds the slot in the volunteer's schedule, then claims the request."""
        doc, o = await self._offer_doc(vid, oid)
        rid = doc["_id"]
        if doc.get("winner") == vid and o["status"] == "accepted":
            return doc  # the same accept again: nothing changes
        self._check_open(doc, o)
        vol = await self.cols.volunteers.find_one({"_id": vid}, {"weekly_hours_cap": 1})
        cap = float((vol or {}).get("weekly_hours_cap", 0))
        await self.schedules.reserve(vid, rid, as_utc(doc["needed_from"]), doc["needed_hours"],
                                     bool(doc.get("recurring")), cap)
        for _ in range(20):
            t = now_utc()
            events = [self._event(doc, ev.VolunteerAccepted(request_id=rid, offer_id=oid, volunteer_id=vid,
                                                            accepted_at=t), oid, t)]
            others = [k for k in self._open(doc) if k != oid]
            events += self._withdraw_open(doc, "another volunteer accepted", t, keep=oid)
            upd = {"$set": {"winner": vid, "status": "accepted", "accepted_at": t, "next_expiry": None,
                            f"offers.{oid}.status": "accepted",
                            **{f"offers.{k}.status": "withdrawn" for k in others}}, "$inc": {"v": 1}}
            new = await update_with_events(
                self.cols.matches, self.relay,
                filter={"_id": rid, "v": doc["v"], "winner": None, f"offers.{oid}.status": OPEN},
                update=upd, events=events, crash_point_name="matching.after_accept_claim")
            if new is not None:
                await self.schedules.set_state(vid, rid, "booked")
                await self._reindex_schedule(vid)
                await self._sync_offers(new)
                if doc.get("resident_ref"):
                    await self.update_volunteer(
                        vid, {"$set": {f"serves.{key_safe(doc['resident_ref'])}": rid, "updated_at": t}})
                    await self._reindex_volunteer(vid)
                return new
            doc = await self.cols.matches.find_one({"_id": rid})
            o = doc["offers"][oid]
            try:
                self._check_open(doc, o)
            except DomainError:
                await self.schedules.set_state(vid, rid, "released")
                await self._reindex_schedule(vid)
                raise
        raise DomainError("busy", "The request is changing too fast; retry", status=503)

    def _check_open(self, doc: dict, o: dict) -> None:
        if doc.get("winner"):
            raise DomainError("taken", "Another volunteer has already accepted this request")
        if o["status"] != OPEN:
            raise DomainError(f"offer_{o['status']}", f"This offer is {o['status']}")
        if as_utc(o["expires_at"]) <= now_utc():
            raise DomainError("offer_expired", "This offer has expired")

    async def decline(self, vid: str, oid: str, reason: str | None) -> dict:
        async with self.locks.hold(f"m|{request_of(oid)}"):
            return await self._decline(vid, oid, reason)

    async def _decline(self, vid: str, oid: str, reason: str | None) -> dict:
        for _ in range(20):
            doc, o = await self._offer_doc(vid, oid)
            if o["status"] == "declined":
                return doc
            if o["status"] != OPEN:
                raise DomainError(f"offer_{o['status']}", f"This offer is {o['status']}")
            t = now_utc()
            sets, events = await self._top_up(doc, t, {oid})
            events.insert(0, self._event(doc, ev.VolunteerDeclined(request_id=doc["_id"], offer_id=oid,
                                                                    volunteer_id=vid, reason=reason,
                                                                    declined_at=t), oid, t))
            sets[f"offers.{oid}.status"] = "declined"
            new = await update_with_events(self.cols.matches, self.relay,
                                           filter={"_id": doc["_id"], "v": doc["v"]},
                                           update={"$set": sets, "$inc": {"v": 1}}, events=events)
            if new is not None:
                await self._sync_offers(new)
                await self._bump(vid, "declines")
                return new
        raise DomainError("busy", "The request is changing too fast; retry", status=503)

    async def _bump(self, vid: str, stat: str, by: int = 1) -> None:
        await self.update_volunteer(vid, {"$inc": {f"stats.{stat}": by}, "$set": {"updated_at": now_utc()}})
        await self._reindex_volunteer(vid)

    async def update_volunteer(self, vid: str, update: dict) -> dict | None:
        """Every change to a volunteer document runs under its lock (FerretDB loses concurrent updates)."""
        async with self.locks.hold(f"v|{vid}"):
            return await self.cols.volunteers.find_one_and_update({"_id": vid}, update,
                                                                  return_document=ReturnDocument.AFTER)

    async def expire_offers(self, now: datetime | None = None) -> int:
        """Periodic job: expire offers past their time and ask the next candidates."""
        now = now or now_utc()
        n = 0
        due = await self.cols.deadlines.find({"at": {"$lte": now}}).limit(200).to_list(None)
        for d in due:
            async with self.locks.hold(f"m|{d['_id']}"):
                n += await self._expire_one(d, now)
        return n

    async def _expire_one(self, doc: dict, now: datetime) -> int:
        n = 0
        rid = doc["_id"]
        doc = await self.cols.matches.find_one({"_id": rid})
        if doc is None or doc["status"] != OPEN:
            await self.cols.deadlines.delete_one({"_id": rid})
            return 0
        for _ in range(5):
            expired = {k for k in self._open(doc) if as_utc(doc["offers"][k]["expires_at"]) <= now}
            if not expired or doc.get("winner"):
                break
            sets, events = await self._top_up(doc, now, expired)
            exp_events = [self._event(doc, ev.OfferExpired(request_id=doc["_id"], offer_id=k,
                                                           volunteer_id=doc["offers"][k]["volunteer_id"],
                                                           expired_at=now), k, now) for k in sorted(expired)]
            for k in expired:
                sets[f"offers.{k}.status"] = "expired"
            new = await update_with_events(self.cols.matches, self.relay,
                                           filter={"_id": doc["_id"], "v": doc["v"]},
                                           update={"$set": sets, "$inc": {"v": 1}}, events=exp_events + events)
            if new is not None:
                n += len(expired)
                await self._sync_offers(new)
                for k in expired:
                    await self._bump(doc["offers"][k]["volunteer_id"], "expiries")
                break
            doc = await self.cols.matches.find_one({"_id": doc["_id"]})
            if doc is None or doc["status"] != OPEN:
                break
        return n

    async def reconcile_holds(self, older_than: timedelta = timedelta(minutes=2)) -> int:
        """Settle slot holds an accept left behind when it crashed between its two writes."""
        cutoff = now_utc() - older_than
        n = 0
        async for sched in self.cols.schedules.find({}):
            for b in (sched.get("busy") or {}).values():
                if b.get("state") != "held" or as_utc(b["at"]) > cutoff:
                    continue
                m = await self.cols.matches.find_one({"_id": b["r"]}, {"winner": 1})
                state = "booked" if m and m.get("winner") == sched["_id"] else "released"
                await self.schedules.set_state(sched["_id"], b["r"], state)
                n += 1
            if n:
                await self._reindex_schedule(sched["_id"])
        return n

    async def my_offers(self, vid: str) -> list[dict]:
        out = []
        async for doc in self.cols.matches.find({"offered_to": vid, "status": OPEN}):
            for oid, o in doc["offers"].items():
                if o["volunteer_id"] != vid or o["status"] != OPEN or doc.get("winner"):
                    continue
                out.append({"offer_id": oid, "request_id": doc["_id"], "service_code": doc["service_code"],
                            "needed_from": doc["needed_from"], "needed_hours": doc["needed_hours"],
                            "recurring_weekly": bool(doc.get("recurring")), "community": doc.get("community"),
                            "distance_m": o["distance_m"], "rank": o["rank"],
                            "why": why_text(o["rank"], o["score"], o["distance_m"], o["components"]),
                            "expires_at": o["expires_at"]})
        return out

    # ================================================================== hours

    async def _assignment(self, vid: str, rid: str) -> dict:
        doc = await self.cols.matches.find_one({"_id": rid})
        if doc is None or doc.get("winner") != vid:
            raise DomainError("not_assigned", "You are not the volunteer of this request", status=404)
        return doc

    async def check_in(self, vid: str, rid: str) -> dict:
        doc = await self._assignment(vid, rid)
        t = now_utc()
        return await self.cols.hours.find_one_and_update(
            {"_id": hours_entry_id(rid, vid)},
            {"$setOnInsert": {"request_id": rid, "volunteer_id": vid, "service_code": doc["service_code"],
                              "community": doc.get("community"), "check_in_at": t, "status": "in_progress",
                              "approval": "pending", "history": []}},
            upsert=True, return_document=ReturnDocument.AFTER)

    async def check_out(self, vid: str, rid: str) -> dict:
        async with self.locks.hold(f"h|{rid}|{vid}"):
            return await self._check_out(vid, rid)

    async def _check_out(self, vid: str, rid: str) -> dict:
        await self._assignment(vid, rid)
        eid = hours_entry_id(rid, vid)
        entry = await self.cols.hours.find_one({"_id": eid})
        if entry is None:
            raise DomainError("not_checked_in", "Check in first", status=409)
        if entry.get("check_out_at"):
            return entry
        t = now_utc()
        hours = self._hours(entry["check_in_at"], t)
        return await self.cols.hours.find_one_and_update(
            {"_id": eid, "check_out_at": None}, {"$set": {"check_out_at": t, "hours": hours,
                                                          "month": self._month(entry["check_in_at"])}},
            return_document=ReturnDocument.AFTER) or await self.cols.hours.find_one({"_id": eid})

    @staticmethod
    def _hours(a: datetime, b: datetime) -> float:
        """Checked-in time in hours, rounded to the quarter hour, at most 24."""
        return min(24.0, round((as_utc(b) - as_utc(a)).total_seconds() / 900) / 4)

    def _month(self, t: datetime) -> str:
        return as_utc(t).astimezone(self.tz).strftime("%Y-%m")

    async def complete(self, vid: str, rid: str, note: str | None) -> dict:
        async with self.locks.hold(f"m|{rid}"):
            return await self._complete(vid, rid, note)

    async def _complete(self, vid: str, rid: str, note: str | None) -> dict:
        doc = await self._assignment(vid, rid)
        entry = await self.check_out(vid, rid)
        if entry.get("status") == "delivered":
            return entry
        t = now_utc()
        env = self._event(doc, ev.ServiceDelivered(request_id=rid, volunteer_id=vid, hours=entry["hours"],
                                                   started_at=entry["check_in_at"], ended_at=entry["check_out_at"],
                                                   note=note), vid, t)
        new = await update_with_events(
            self.cols.hours, self.relay, filter={"_id": entry["_id"], "status": {"$ne": "delivered"}},
            update={"$set": {"status": "delivered", "note": note, "delivered_at": t}}, events=[env])
        if new is None:
            return await self.cols.hours.find_one({"_id": entry["_id"]})
        await self.cols.matches.update_one({"_id": rid}, {"$set": {"status": "delivered"}, "$inc": {"v": 1}})
        await self.schedules.set_state(vid, rid, "booked", hours=entry["hours"])
        await self._reindex_schedule(vid)
        await self._bump(vid, "completed")
        return new

    async def _approve_hours(self, entry_id: str, staff: str) -> dict:
        entry = await self._entry(entry_id)
        t = now_utc()
        return await self.cols.hours.find_one_and_update(
            {"_id": entry_id}, {"$set": {"approval": "approved", "approved_by": staff, "approved_at": t},
                                "$push": {"history": {"at": t, "by": staff, "action": "approved",
                                                      "hours": entry.get("hours")}}},
            return_document=ReturnDocument.AFTER)

    async def _correct_hours(self, entry_id: str, staff: str, hours: float, reason: str) -> dict:
        """A correction never deletes: the old figure stays in ``history`` with who, when and why."""
        entry = await self._entry(entry_id)
        t = now_utc()
        new = await self.cols.hours.find_one_and_update(
            {"_id": entry_id}, {"$set": {"hours": hours, "approval": "corrected", "approved_by": staff,
                                         "approved_at": t},
                                "$push": {"history": {"at": t, "by": staff, "action": "corrected",
                                                      "from_hours": entry.get("hours"), "to_hours": hours,
                                                      "reason": reason}}},
            return_document=ReturnDocument.AFTER)
        await self.schedules.set_state(entry["volunteer_id"], entry["request_id"], "booked", hours=hours)
        await self._reindex_schedule(entry["volunteer_id"])
        return new

    async def approve_hours(self, entry_id: str, staff: str) -> dict:
        async with self.locks.hold(f"h|{entry_id}"):
            return await self._approve_hours(entry_id, staff)

    async def correct_hours(self, entry_id: str, staff: str, hours: float, reason: str) -> dict:
        async with self.locks.hold(f"h|{entry_id}"):
            return await self._correct_hours(entry_id, staff, hours, reason)

    async def _entry(self, entry_id: str) -> dict:
        entry = await self.cols.hours.find_one({"_id": entry_id})
        if entry is None:
            raise DomainError("not_found", "No such hours entry", status=404)
        if entry.get("hours") is None:
            raise DomainError("not_checked_out", "The volunteer has not checked out yet", status=409)
        return entry

    async def no_show(self, rid: str, staff: str) -> dict:
        async with self.locks.hold(f"m|{rid}"):
            return await self._no_show(rid, staff)

    async def _no_show(self, rid: str, staff: str) -> dict:
        """Staff report that the accepted volunteer did not come: reliability drops, others are asked."""
        for _ in range(20):
            doc = await self.cols.matches.find_one({"_id": rid})
            if doc is None or not doc.get("winner"):
                raise DomainError("not_found", "No accepted volunteer on this request", status=404)
            if doc["status"] != "accepted":
                raise DomainError("wrong_state", f"The request is {doc['status']}")
            vid, t = doc["winner"], now_utc()
            cleared = {**doc, "offers": {k: o for k, o in doc["offers"].items()}}
            sets, events = await self._top_up(cleared, t, set())
            sets.update({"winner": None, "status": OPEN if sets.get("status") != "unmatched" else "unmatched",
                         "no_show": {"volunteer_id": vid, "by": staff, "at": t},
                         **{f"offers.{k}.status": "no_show" for k, o in doc["offers"].items()
                            if o["status"] == "accepted"}})
            new = await update_with_events(self.cols.matches, self.relay, filter={"_id": rid, "v": doc["v"]},
                                           update={"$set": sets, "$inc": {"v": 1}}, events=events)
            if new is not None:
                await self.schedules.set_state(vid, rid, "released")
                await self._reindex_schedule(vid)
                await self._bump(vid, "no_shows")
                await self._sync_offers(new)
                return new
        raise DomainError("busy", "The request is changing too fast; retry", status=503)
