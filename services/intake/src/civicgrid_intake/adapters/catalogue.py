"""The service catalogue as an application component: cached in memory, stored in ``services``,
every change (incl. the defaults at first start) published as ``ServiceDefined`` via the outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from civicgrid_contracts import Envelope, derived_event_id
from civicgrid_contracts.events.catalogue import ServiceDefined
from civicgrid_intake.adapters.documents import SERVICES, stamped, upcast
from civicgrid_intake.domain.catalogue import DEFAULT_CATALOGUE, ServiceDef, ServiceSpec
from civicgrid_intake.domain.errors import Conflict, NotFound
from civicgrid_runtime.store import OUTBOX, PENDING, OutboxRelay, update_with_events

STATE_FIELDS = ("_id", "revision", "active", "changed_at")


def service_event(svc: ServiceDef, *, source: str) -> Envelope:
    payload = ServiceDefined(
        request_id=svc.code, service_code=svc.code, name_zh=svc.name_zh, name_en=svc.name_en, group=svc.group,
        handled_by=tuple(svc.handled_by), departments=tuple(svc.departments), needs_volunteer=svc.needs_volunteer,
        required_qualifications=tuple(svc.required_qualifications), visit_hours=svc.visit_hours,
        time_limits=svc.time_limits, active=svc.active, revision=svc.revision, changed_at=svc.changed_at,
    )
    eid = derived_event_id(f"catalogue:{svc.code}", ServiceDefined.event_type, str(svc.revision))
    return Envelope.wrap(payload, source=source, event_id=eid, time=svc.changed_at)


def _to_doc(svc: ServiceDef) -> dict[str, Any]:
    d = svc.model_dump(mode="json", exclude={"code", "changed_at"})
    d["_id"] = svc.code
    d["changed_at"] = svc.changed_at
    return stamped(SERVICES, d)


def _from_doc(doc: dict[str, Any]) -> ServiceDef:
    d = {k: v for k, v in upcast(SERVICES, doc).items() if not k.startswith("_") and k != "schema_version"}
    return ServiceDef(code=doc["_id"], **d)


class Catalogue:
    def __init__(self, col: AsyncCollection, relay: OutboxRelay, *, source: str) -> None:
        self.col = col
        self.relay = relay
        self.source = source
        self._cache: dict[str, ServiceDef] = {}

    def get(self, code: str) -> ServiceDef | None:
        return self._cache.get(code)

    def all(self, *, include_retired: bool = False) -> list[ServiceDef]:
        return sorted((s for s in self._cache.values() if include_retired or s.active), key=lambda s: (s.group, s.code))

    async def refresh(self) -> None:
        docs = await self.col.find({}, {OUTBOX: 0, PENDING: 0}).to_list(None)
        self._cache = {d["_id"]: _from_doc(d) for d in docs}

    async def _insert(self, svc: ServiceDef) -> bool:
        try:
            await self.relay.insert_with_events(self.col, _to_doc(svc), [service_event(svc, source=self.source)],
                                                unchanged={"revision": svc.revision})
        except DuplicateKeyError:
            return False
        return True

    async def load_defaults(self) -> int:
        """Insert every default service not yet stored (revision 1); returns how many were new."""
        now = datetime.now(UTC)
        n = 0
        for svc in DEFAULT_CATALOGUE:
            if await self._insert(svc.model_copy(update={"revision": 1, "changed_at": now})):
                n += 1
        await self.refresh()
        return n

    async def create(self, code: str, spec: ServiceSpec) -> ServiceDef:
        svc = ServiceDef(code=code, **spec.model_dump(), revision=1, changed_at=datetime.now(UTC))
        if not await self._insert(svc):
            raise Conflict(f"service {code!r} already exists; update it with PUT", field="code")
        self._cache[code] = svc
        return svc

    async def _change(self, code: str, change) -> ServiceDef:
        doc = await self.col.find_one({"_id": code}, {OUTBOX: 0, PENDING: 0})
        if doc is None:
            raise NotFound(f"no service {code!r}", field="service_code")
        cur = _from_doc(doc)
        new = change(cur).model_copy(update={"revision": cur.revision + 1, "changed_at": datetime.now(UTC)})
        fields = {k: v for k, v in _to_doc(new).items() if k != "_id"}
        out = await update_with_events(self.col, self.relay, filter={"_id": code, "revision": cur.revision},
                                       update={"$set": fields}, events=[service_event(new, source=self.source)])
        if out is None:
            raise Conflict(f"service {code!r} changed meanwhile; retry", field="revision")
        self._cache[code] = new
        return new

    async def update(self, code: str, spec: ServiceSpec) -> ServiceDef:
        return await self._change(code, lambda cur: ServiceDef(code=code, **spec.model_dump(), active=cur.active))

    async def retire(self, code: str) -> ServiceDef:
        return await self._change(code, lambda cur: cur.model_copy(update={"active": False}))

    async def reactivate(self, code: str) -> ServiceDef:
        return await self._change(code, lambda cur: cur.model_copy(update={"active": True}))
