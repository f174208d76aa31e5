"""The service catalogue as an application component: cached in memory, stored in ``services``,
every change (incl. the defaults at first start) published as ``ServiceDefined`` via the outbox.

``ServiceCatalogue`` holds what a change is (the next revision, the administrator's If-Match
checked, the event); where the documents live is its subclass's: ``Catalogue`` on the store,
``adapters/memory.InMemoryCatalogue`` for unit tests (``tests/contract`` holds both to one contract).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from civicgrid_contracts import Envelope, derived_event_id
from civicgrid_contracts.events.catalogue import ServiceDefined, ServiceQuestion
from civicgrid_intake.adapters.documents import SERVICES, stamped, upcast
from civicgrid_intake.domain.catalogue import DEFAULT_CATALOGUE, ServiceDef, ServiceSpec, with_shipped_texts
from civicgrid_intake.domain.errors import Conflict, NotFound, StaleRevision
from civicgrid_intake.domain.revisions import require_revision
from civicgrid_runtime.store import OUTBOX, PENDING, OutboxRelay, update_with_events

STATE_FIELDS = ("_id", "revision", "active", "changed_at")
QUESTION_FIELDS = tuple(ServiceQuestion.model_fields)


def service_event(svc: ServiceDef, *, source: str) -> Envelope:
    payload = ServiceDefined(
        request_id=svc.code, service_code=svc.code, name_zh=svc.name_zh, name_en=svc.name_en, group=svc.group,
        handled_by=tuple(svc.handled_by), departments=tuple(svc.departments), needs_volunteer=svc.needs_volunteer,
        required_qualifications=tuple(svc.required_qualifications), visit_hours=svc.visit_hours,
        time_limits=svc.time_limits, active=svc.active, revision=svc.revision, changed_at=svc.changed_at,
        attributes=tuple(ServiceQuestion.model_validate(a.model_dump(include=set(QUESTION_FIELDS)))
                         for a in svc.attributes),
    )
    eid = derived_event_id(f"catalogue:{svc.code}", ServiceDefined.event_type, str(svc.revision))
    return Envelope.wrap(payload, source=source, event_id=eid, time=svc.changed_at)


def to_document(svc: ServiceDef) -> dict[str, Any]:
    d = svc.model_dump(mode="json", exclude={"code", "changed_at"})
    d["_id"] = svc.code
    d["changed_at"] = svc.changed_at
    return stamped(SERVICES, d)


def from_document(doc: dict[str, Any]) -> ServiceDef:
    d = {k: v for k, v in upcast(SERVICES, doc).items() if not k.startswith("_") and k != "schema_version"}
    return ServiceDef(code=doc["_id"], **d)


class ServiceCatalogue:
    """The catalogue's rules of change over storage the subclass provides (four methods)."""

    def __init__(self, *, source: str) -> None:
        self.source = source
        self._cache: dict[str, ServiceDef] = {}

    # ------------------------------------------------------------------ storage (the subclass's)

    async def _documents(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def _document(self, code: str) -> dict[str, Any] | None:
        raise NotImplementedError

    async def _insert(self, doc: dict[str, Any], event: Envelope) -> bool:
        """Store a new service with its event; False when the code is taken."""
        raise NotImplementedError

    async def _replace(self, code: str, revision: int, fields: dict[str, Any], event: Envelope) -> bool:
        """Set ``fields`` and publish ``event`` if the service is still at ``revision``; False if not."""
        raise NotImplementedError

    # ------------------------------------------------------------------ reading

    def get(self, code: str) -> ServiceDef | None:
        return self._cache.get(code)

    def all(self, *, include_retired: bool = False) -> list[ServiceDef]:
        return sorted((s for s in self._cache.values() if include_retired or s.active), key=lambda s: (s.group, s.code))

    async def refresh(self) -> None:
        """Follow other replicas' changes. A read that began before this replica's own change ended
        must not undo it: per service the higher revision stays (services are retired, never deleted)."""
        read = {d["_id"]: from_document(d) for d in await self._documents()}
        newer_here = {code: svc for code, svc in self._cache.items()
                      if code not in read or svc.revision > read[code].revision}
        self._cache = {**read, **newer_here}

    async def current(self, code: str) -> ServiceDef:
        """The service as stored now (not the cache: another replica may have changed it)."""
        doc = await self._document(code)
        if doc is None:
            raise NotFound(f"no service {code!r}", field="service_code")
        return from_document(doc)

    # ------------------------------------------------------------------ changing

    async def _add(self, svc: ServiceDef) -> bool:
        return await self._insert(to_document(svc), service_event(svc, source=self.source))

    async def load_defaults(self) -> int:
        """Insert every default service not yet stored (revision 1); returns how many were new."""
        now = datetime.now(UTC)
        n = 0
        for svc in DEFAULT_CATALOGUE:
            if await self._add(svc.model_copy(update={"revision": 1, "changed_at": now})):
                n += 1
        await self.refresh()
        return n

    async def complete_shipped_texts(self) -> int:
        """Give the shipped services' questions held in one language (stored before both were asked
        for) their other text from the shipped catalogue, where the held text is still the shipped
        one (``with_shipped_texts``); each is a change of its own (a revision, its event). Returns
        how many services were completed."""
        n = 0
        for shipped in DEFAULT_CATALOGUE:
            held = self._cache.get(shipped.code)
            if held is None or with_shipped_texts(held, shipped) is None:
                continue
            try:
                await self._change(shipped.code, lambda cur, s=shipped: with_shipped_texts(cur, s) or cur,
                                   held.revision)
            except (StaleRevision, Conflict):
                continue  # changed meanwhile (another replica completing it, an administrator): left as it is
            n += 1
        return n

    async def create(self, code: str, spec: ServiceSpec) -> ServiceDef:
        svc = ServiceDef(code=code, **spec.model_dump(), revision=1, changed_at=datetime.now(UTC))
        if not await self._add(svc):
            raise Conflict(f"service {code!r} already exists; update it with PUT", field="code")
        self._cache[code] = svc
        return svc

    async def _change(self, code: str, change: Callable[[ServiceDef], ServiceDef], expected: int | None) -> ServiceDef:
        """The next revision of ``code`` made by ``change``. ``expected``: the revision the
        administrator's change was made on (If-Match); None saves over whatever is there (ADR 0903)."""
        cur = await self.current(code)
        require_revision(f"service {code!r}", cur.revision, expected)
        new = change(cur).model_copy(update={"revision": cur.revision + 1, "changed_at": datetime.now(UTC)})
        fields = {k: v for k, v in to_document(new).items() if k != "_id"}
        if not await self._replace(code, cur.revision, fields, service_event(new, source=self.source)):
            if expected is not None:  # another save came between: the If-Match no longer holds
                require_revision(f"service {code!r}", (await self.current(code)).revision, expected)
            raise Conflict(f"service {code!r} changed meanwhile; retry", field="revision")
        self._cache[code] = new
        return new

    async def update(self, code: str, spec: ServiceSpec, *, expected: int | None = None) -> ServiceDef:
        return await self._change(code, lambda cur: ServiceDef(code=code, **spec.model_dump(), active=cur.active),
                                  expected)

    async def retire(self, code: str, *, expected: int | None = None) -> ServiceDef:
        return await self._change(code, lambda cur: cur.model_copy(update={"active": False}), expected)

    async def reactivate(self, code: str, *, expected: int | None = None) -> ServiceDef:
        return await self._change(code, lambda cur: cur.model_copy(update={"active": True}), expected)


class Catalogue(ServiceCatalogue):
    """The catalogue on the store: ``services`` documents, changes guarded by their ``revision``."""

    def __init__(self, col: AsyncCollection, relay: OutboxRelay, *, source: str) -> None:
        super().__init__(source=source)
        self.col = col
        self.relay = relay

    async def _documents(self) -> list[dict[str, Any]]:
        return await self.col.find({}, {OUTBOX: 0, PENDING: 0}).to_list(None)

    async def _document(self, code: str) -> dict[str, Any] | None:
        return await self.col.find_one({"_id": code}, {OUTBOX: 0, PENDING: 0})

    async def _insert(self, doc: dict[str, Any], event: Envelope) -> bool:
        try:
            await self.relay.insert_with_events(self.col, doc, [event], unchanged={"revision": doc["revision"]})
        except DuplicateKeyError:
            return False
        return True

    async def _replace(self, code: str, revision: int, fields: dict[str, Any], event: Envelope) -> bool:
        out = await update_with_events(self.col, self.relay, filter={"_id": code, "revision": revision},
                                       update={"$set": fields}, events=[event])
        return out is not None
