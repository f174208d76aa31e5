"""Intake's command and event handlers: load the aggregate, call it, save it (its events go with
the same single-document write and the runtime's relay publishes them).

Concurrent changes of one request are guarded by its ``version`` (``RequestStore.save``): a save
that lost the race reloads and calls the aggregate again, which re-checks its rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.intake import ImportedFrom, RequestMerged, RequestReceived
from civicgrid_contracts.values import Location
from civicgrid_intake.adapters.catalogue import ServiceCatalogue
from civicgrid_intake.adapters.crypto import ContactVault
from civicgrid_intake.adapters.duplicate_index import DuplicateIndex
from civicgrid_intake.adapters.repository import cell_of
from civicgrid_intake.domain.catalogue import AnswerErrors, ServiceDef, validate_answers
from civicgrid_intake.domain.commands import RateRequest, SubmitRequest
from civicgrid_intake.domain.errors import (
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    UnknownService,
)
from civicgrid_intake.domain.imports import CheckedCase, ImportBatch, check_batch, to_millisecond
from civicgrid_intake.domain.submission import DuplicateCandidate, Submission
from civicgrid_intake.ports import AccessTrailPort, AlreadyStored, ApiKeyStore, RequestStore
from civicgrid_intake.settings import IntakeSettings
from civicgrid_runtime.auth import Principal
from civicgrid_runtime.calendar import CalendarFollower
from civicgrid_runtime.faults import crash_point
from civicgrid_runtime.logging import get_logger
from civicgrid_runtime.store import pending_events

log = get_logger("civicgrid.intake")
IDEMPOTENCY_NS = uuid.UUID("0b6a1b4e-5c1f-4d8e-9a57-1f3f0c6e2d11")
#: a change that keeps losing the version race this often is a fault, not contention
SAVE_ATTEMPTS = 20
#: where a test kills intake between storing a duplicate and linking it to the request it follows
CRASH_BEFORE_LINK = "intake.after_store_before_link"


@dataclass
class Submitted:
    answer: dict[str, Any]
    token: str
    replayed: bool
    request_id: str


def _import_conflict(c: CheckedCase) -> dict[str, str]:
    return {"field": f"items/{c.index}/external_ref",
            "message": f"{c.item.external_ref!r} was imported before with other content (request {c.request_id})"}


def _now() -> datetime:
    """Now, to the millisecond: what the store keeps of an instant, so that an event and the document
    written with it hold the same instant (and a deadline computed from it, the same deadline)."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


async def change_request(requests: RequestStore, rid: str, change: Callable[[Submission], Any], *,
                         missing_ok: bool = False) -> Submission | None:
    """Load, change, save; again on a lost version race (the aggregate re-checks its rules).
    ``change`` returning False means nothing to change (already done)."""
    for _ in range(SAVE_ATTEMPTS):
        sub = await requests.get(rid)
        if sub is None:
            if missing_ok:
                return None
            raise NotFound(f"no request {rid!r}")
        if change(sub) is False:
            return sub
        if await requests.save(sub):
            return sub
    raise Conflict(f"Request {rid} is changing too often right now; try again.")


class LifecycleFold:
    """Grid's, matching's and audit's lifecycle events -> the requests' status."""

    def __init__(self, requests: RequestStore) -> None:
        self.requests = requests

    async def apply_events(self, envs: list[Envelope]) -> None:
        """Fold a batch, each request's events in order: one read for the batch, one
        version-guarded save per request; a request whose save lost a race goes again alone."""
        by_rid: dict[str, list[Envelope]] = {}
        for env in envs:
            by_rid.setdefault(env.subject, []).append(env)
        loaded = await self.requests.get_many(by_rid)
        for rid, events in by_rid.items():
            sub = loaded.get(rid)
            if sub is None:
                continue  # not ours (another deployment's request)
            if not self._fold(sub, events):
                continue
            if not await self.requests.save(sub):
                await change_request(self.requests, rid, lambda s, evs=events: self._fold(s, evs), missing_ok=True)

    @staticmethod
    def _fold(sub: Submission, events: list[Envelope]) -> bool:
        return any([sub.apply(env) for env in events])  # a list: every event is applied


class IntakeHandlers:
    def __init__(self, requests: RequestStore, api_keys: ApiKeyStore, access: AccessTrailPort,
                 catalogue: ServiceCatalogue, vault: ContactVault, settings: IntakeSettings, *,
                 duplicates: DuplicateIndex, calendar: CalendarFollower) -> None:
        self.requests = requests
        self.api_keys = api_keys
        #: staff reads of contact details and admin changes, as events for audit's trail
        self.access = access
        self.catalogue = catalogue
        #: the working calendar every deadline set here is computed on
        self.calendar = calendar
        self.vault = vault
        self.settings = settings
        self.source = settings.source
        #: where likely duplicates are looked for (kept to intake's topic by a ``DuplicateFeed``)
        self.duplicates = duplicates
        #: other services' lifecycle events folded into the requests' status
        self.lifecycle = LifecycleFold(requests)

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
            existing = await self.requests.get(rid)
            if existing:
                return self._replay(existing, fingerprint)
        else:
            rid = str(uuid.uuid4())
        now = _now()
        loc = cmd.location
        cell = cell_of(loc.lat, loc.lon) if loc.lat is not None else None
        parent = None
        if cell and self.settings.duplicate_distance_m > 0:
            parent = await self._find_duplicate(cmd.service_code, loc.lat, loc.lon, now)
        contact = cmd.contact.model_dump(exclude_none=True) if cmd.contact else {}
        received, details = self._received(svc, cmd, answers, request_id=rid, cell=cell, contact=contact,
                                           received_at=now, duplicate_of=parent.request_id if parent else None)
        answer = {"request_id": rid, "expected_at": received.resolution_due.isoformat(), "service_code": svc.code,
                  "message": f"Thank you. Your request was received ({svc.name_zh} / {svc.name_en})."}
        sub = Submission.receive(received, source=self.source, details=details, parent=parent, answer=answer,
                                 idem_hash=fingerprint,
                                 contact_enc=self.vault.encrypt(contact, request_id=rid) if contact else None)
        try:
            await self.requests.add(sub)
        except AlreadyStored:  # the same Idempotency-Key raced us
            return self._replay(await self.requests.get(rid), fingerprint)
        if cell:
            self.duplicates.add(rid, service_code=svc.code, lat=loc.lat, lon=loc.lon, at=now, merged=parent is not None)
        if parent:
            # after the insert: a crash in between leaves the new request pending in its outbox, and
            # the relay's recovery (``recover``) finishes the link before publishing it
            crash_point(CRASH_BEFORE_LINK)
            await self.link_follower(rid, parent.request_id)
        return Submitted(answer=sub.answer, token=self.vault.request_token(rid), replayed=False, request_id=rid)

    def _received(self, svc: ServiceDef, cmd: SubmitRequest, answers: dict[str, Any], *, request_id: str,
                  cell: str | None, contact: dict[str, Any], received_at: datetime,
                  **more: Any) -> tuple[RequestReceived, dict[str, Any]]:
        """The request's ``RequestReceived`` (its deadlines computed on the working calendar from
        ``received_at``) and the details its document keeps."""
        loc = cmd.location
        location = Location(lat=loc.lat, lon=loc.lon, building_id=loc.building_id, address_text=loc.address_text,
                            cell=cell)
        received = RequestReceived.starting_clocks(
            self.calendar.calendar, request_id=request_id, service_code=svc.code, service_name=svc.name_en,
            service_group=svc.group, handled_by=tuple(svc.handled_by), departments=tuple(svc.departments),
            needs_volunteer=svc.needs_volunteer, time_limits=svc.time_limits, location=location,
            description=cmd.description, attributes=answers, channel=cmd.channel, media_url=cmd.media_url,
            reporter_id=self.vault.reporter_id(phone=contact.get("phone"), email=contact.get("email")),
            preferred_time=cmd.preferred_time, received_at=received_at, **more)
        details = {"service_code": svc.code, "service_name": svc.name_en, "service_name_zh": svc.name_zh,
                   "service_group": svc.group, "location": location.model_dump(), "cell": cell,
                   "description": cmd.description, "attributes": answers, "channel": cmd.channel,
                   "media_url": cmd.media_url, "preferred_time": cmd.preferred_time, "device_id": cmd.device_id,
                   "account_id": cmd.account_id, "time_limits": svc.time_limits.model_dump(), "imported_from": None}
        if received.imported_from is not None:
            details["imported_from"] = {**received.imported_from.model_dump(), "dispatched_at": received.dispatched_at}
        return received, details

    def _replay(self, existing: Submission, fingerprint: str | None) -> Submitted:
        if existing.idem_hash != fingerprint:
            raise IdempotencyConflict("This Idempotency-Key was used with a different request body.",
                                      field="Idempotency-Key")
        rid = existing.request_id
        return Submitted(answer=existing.answer, token=self.vault.request_token(rid), replayed=True, request_id=rid)

    async def _find_duplicate(self, service_code: str, lat: float, lon: float,
                              now: datetime) -> DuplicateCandidate | None:
        near = self.duplicates.candidates(service_code, lat, lon, now=now)
        if not near:
            return None
        states = await self.requests.get_many([cid for _, _, cid in near])
        for dist, _at, cid in near:
            c = states.get(cid)
            if c and c.can_be_followed:
                return DuplicateCandidate(cid, dist, c.followers)
        return None

    # ------------------------------------------------------------------ import (administrators)

    async def import_requests(self, batch: ImportBatch, staff: Principal, *, reason: str | None = None) -> dict[str, Any]:
        """Open cases of the system the city replaces, each with its original received time: every
        item is checked first (nothing is imported while one has a defect), a reference imported
        before with the same content answers what it got then, with other content is a conflict.
        The act is recorded in the staff access trail; each case's own ``RequestReceived`` says
        who imported it from where."""
        now = _now()
        services = {code: svc for code in {i.service_code for i in batch.items}
                    if (svc := self.catalogue.get(code)) is not None}
        checked, defects = check_batch(batch, services, now=now,
                                       window=timedelta(days=self.settings.import_window_days))
        if defects:
            raise InvalidRequest(f"{len(defects)} defect(s) in the import; nothing was imported.", errors=defects)
        stored = await self.requests.get_many([c.request_id for c in checked])
        conflicts = [_import_conflict(c) for c in checked
                     if c.request_id in stored and stored[c.request_id].idem_hash != c.item.fingerprint()]
        if conflicts:
            raise Conflict(f"{len(conflicts)} case(s) were imported before with other content; nothing was "
                           "imported.", errors=conflicts)
        origin = {"system": batch.system, "batch_id": str(uuid.uuid4()), "imported_by": staff.sub, "imported_at": now}
        results = [await self._import_case(c, origin, stored.get(c.request_id)) for c in checked]
        imported = sum(r["status"] == "imported" for r in results)
        received = [c.item.received_at for c in checked]
        await self.access.admin_changed(staff, "requests.import", origin["batch_id"], reason=reason, details={
            "system": batch.system, "items": len(results), "imported": imported,
            "already_imported": len(results) - imported, "received_from": min(received).isoformat(),
            "received_to": max(received).isoformat()})
        return {"batch_id": origin["batch_id"], "system": batch.system, "imported": imported,
                "already_imported": len(results) - imported, "items": results}

    async def _import_case(self, c: CheckedCase, origin: dict[str, Any], existing: Submission | None) -> dict[str, Any]:
        imported = existing is None
        if existing is None:
            existing, imported = await self._store_imported(c, origin)
        if not imported and existing.idem_hash != c.item.fingerprint():  # another import of it won a race
            raise Conflict("This case was imported meanwhile with other content.", errors=[_import_conflict(c)])
        return self._import_result(c, existing, imported=imported)

    async def _store_imported(self, c: CheckedCase, origin: dict[str, Any]) -> tuple[Submission, bool]:
        """Store one case: it and True; or, when another import stored it meanwhile, that one and False."""
        item, rid = c.item, c.request_id
        received_at = to_millisecond(item.received_at)
        loc = item.location
        cell = cell_of(loc.lat, loc.lon) if loc.lat is not None else None
        contact = item.contact.model_dump(exclude_none=True) if item.contact else {}
        received, details = self._received(
            c.service, item, c.answers, request_id=rid, cell=cell, contact=contact, received_at=received_at,
            imported_from=ImportedFrom(reference=item.external_ref, **origin),
            dispatched_at=to_millisecond(item.dispatched_at) if item.dispatched_at else None)
        answer = {"request_id": rid, "expected_at": received.resolution_due.isoformat(), "service_code": c.service.code,
                  "message": f"Imported from {origin['system']} (case {item.external_ref})."}
        sub = Submission.receive(received, source=self.source, details=details, parent=None, answer=answer,
                                 idem_hash=item.fingerprint(),
                                 contact_enc=self.vault.encrypt(contact, request_id=rid) if contact else None)
        try:
            await self.requests.add(sub)
        except AlreadyStored:
            return await self.requests.get(rid), False
        if cell:  # a resident reporting the same problem again follows the imported case
            self.duplicates.add(rid, service_code=c.service.code, lat=loc.lat, lon=loc.lon, at=received_at,
                                merged=False)
        return sub, True

    def _import_result(self, c: CheckedCase, sub: Submission, *, imported: bool) -> dict[str, Any]:
        return {"index": c.index, "external_ref": c.item.external_ref, "request_id": sub.request_id,
                "status": "imported" if imported else "already_imported", "received_at": sub.received_at,
                "response_due": sub.response_due, "resolution_due": sub.state.expected_at,
                "token": self.vault.request_token(sub.request_id)}

    async def link_follower(self, rid: str, parent_id: str) -> None:
        await self._change(parent_id, lambda p: p.add_follower(rid, at=_now()), missing_ok=True)

    async def recover(self, docs: list[dict[str, Any]]) -> None:
        """The relay found these requests' events unpublished after a crash: finish the duplicate
        links their submissions may not have made (idempotent)."""
        for doc in docs:
            for _, env in pending_events(doc):
                if isinstance(env.data, RequestMerged):
                    await self.link_follower(env.data.request_id, env.data.into_request_id)

    async def _change(self, rid: str, change: Callable[[Submission], Any], *,
                      missing_ok: bool = False) -> Submission | None:
        return await change_request(self.requests, rid, change, missing_ok=missing_ok)

    # ------------------------------------------------------------------ reading

    async def get(self, rid: str) -> dict[str, Any]:
        doc = await self.requests.read(rid)
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
        parent = await self.requests.read(doc["duplicate_of"])
        return parent["status"] if parent else None

    async def by_token(self, token: str) -> dict[str, Any]:
        rid = token.rpartition(".")[0]
        if not rid or not self.vault.check_token(rid, token):
            raise NotFound("unknown token")
        return await self.get(rid)

    async def search(self, **query: Any) -> list[dict[str, Any]]:
        return await self.requests.search(**query)

    async def check_api_key(self, key: str | None) -> bool:
        return await self.api_keys.check(key) is not None

    async def mint_api_key(self, name: str, *, key: str | None = None) -> str:
        return await self.api_keys.mint(name, key=key)

    # ------------------------------------------------------------------ resident actions

    async def rate(self, rid: str, cmd: RateRequest) -> dict[str, Any]:
        sub = await self._change(rid, lambda s: s.rate(cmd.rating, cmd.comment, source=self.source, at=_now()))
        return await self.get(sub.request_id)

    async def erase_contact(self, rid: str) -> dict[str, Any]:
        now = _now()
        await self._change(rid, lambda s: s.erase_contact(at=now))
        return {"request_id": rid, "contact_erased_at": now.isoformat()}

    # ------------------------------------------------------------------ staff actions

    async def unmerge(self, rid: str, staff: Principal, reason: str) -> dict[str, Any]:
        parents: list[str] = []
        sub = await self._change(rid, lambda s: parents.append(s.unmerge(staff_id=staff.sub, reason=reason,
                                                                        source=self.source, at=_now())))
        await self._change(parents[-1], lambda p: p.drop_follower(rid, at=_now()), missing_ok=True)
        loc = sub.details.get("location") or {}
        if sub.details.get("cell") and loc.get("lat") is not None:  # other replicas follow its RequestUnmerged
            self.duplicates.add(rid, service_code=sub.details["service_code"], lat=loc["lat"], lon=loc["lon"],
                                at=sub.received_at, merged=False)
        return await self.get(rid)

    async def read_contact(self, rid: str, staff: Principal, reason: str) -> dict[str, Any]:
        """The reporter's contact details; the read is recorded (who, why) and on its way to audit first."""
        sub = await self.requests.get(rid)
        if sub is None:
            raise NotFound(f"no request {rid!r}")
        if not staff.covers(sub.state.area_code):  # a community supervisor's scope too, not only a grid worker's
            raise Forbidden(f"Request {rid} is not in your area {staff.area!r}.")
        erased = sub.contact_erased_at is not None
        event = await self.access.contact_read(staff, rid, reason, erased=erased)
        contact = self.vault.decrypt(sub.contact_enc, request_id=rid) if sub.contact_enc else None
        return {"request_id": rid, "contact": contact, "erased": erased, "logged_at": event.time.isoformat()}

    async def access_log(self, rid: str) -> list[dict[str, Any]]:
        return await self.access.contact_reads(rid)
