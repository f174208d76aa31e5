"""In-memory fakes of intake's ports, for the handlers' unit tests (no store, no broker).

They keep what the MongoDB adapters keep — the stored document (``documents.to_document``, read
back through the same upcaster) — and publish a saved change's events at once to ``published``;
``tests/contract`` holds both adapters to the same assertions.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from civicgrid_contracts import Envelope
from civicgrid_intake.adapters import documents as docs_
from civicgrid_intake.adapters.catalogue import ServiceCatalogue, to_document
from civicgrid_intake.adapters.repository import key_hash, new_api_key
from civicgrid_intake.domain.catalogue import DEFAULT_CATALOGUE
from civicgrid_intake.domain.submission import Submission
from civicgrid_intake.ports import AlreadyStored


class InMemoryRequests:
    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.published: list[Envelope] = []

    async def get(self, request_id: str) -> Submission | None:
        doc = self.documents.get(request_id)
        return docs_.from_document(copy.deepcopy(doc)) if doc else None

    async def get_many(self, request_ids: Iterable[str]) -> dict[str, Submission]:
        return {i: docs_.from_document(copy.deepcopy(self.documents[i])) for i in request_ids if i in self.documents}

    async def add(self, sub: Submission) -> None:
        if sub.request_id in self.documents:
            raise AlreadyStored(sub.request_id)
        self.documents[sub.request_id] = copy.deepcopy(docs_.to_document(sub))
        self.published += sub.take_events()

    async def save(self, sub: Submission) -> bool:
        stored = self.documents.get(sub.request_id)
        if stored is None or stored.get("version") != sub.version:
            return False
        update = docs_.save_update(sub)
        stored.update(copy.deepcopy(update["$set"]))
        for f in update.get("$unset", {}):
            stored.pop(f, None)
        self.published += sub.take_events()
        sub.version += 1
        return True

    async def read(self, request_id: str) -> dict[str, Any] | None:
        doc = self.documents.get(request_id)
        return docs_.view(copy.deepcopy(doc)) if doc else None

    async def search(self, *, ids: list[str] | None = None, statuses: list[str] | None = None,
                     service_codes: list[str] | None = None, area: str | None = None,
                     start: datetime | None = None, end: datetime | None = None,
                     after: tuple[datetime, str] | None = None, skip: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        if ids:
            return [docs_.view(copy.deepcopy(self.documents[i])) for i in dict.fromkeys(ids)
                    if i in self.documents][skip:skip + limit]

        def wanted(d: dict[str, Any]) -> bool:
            t = d["received_at"]
            return ((not statuses or d["status"] in statuses) and (not service_codes or d["service_code"] in service_codes)
                    and (not area or area in (d.get("area_keys") or ())) and (start is None or t >= start)
                    and (end is None or t < end) and (after is None or (t, d["_id"]) < after))

        found = sorted((d for d in self.documents.values() if wanted(d)), key=lambda d: (d["received_at"], d["_id"]),
                       reverse=True)
        return [docs_.view(copy.deepcopy(d)) for d in found[skip:skip + limit]]


class InMemoryApiKeys:
    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}

    async def mint(self, name: str, *, key: str | None = None) -> str:
        key = key or new_api_key()
        self.documents.setdefault(key_hash(key), {"created_at": datetime.now(UTC)}).update(
            docs_.stamped(docs_.API_KEYS, {"name": name, "active": True}))
        return key

    async def check(self, key: str | None) -> dict[str, Any] | None:
        doc = self.documents.get(key_hash(key)) if key else None
        return doc if doc and doc.get("active") else None


class InMemoryAccessTrail:
    """What ``AccessTrail`` records, kept in a list (the events are not published)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    async def contact_read(self, staff: Any, request_id: str, reason: str, *, erased: bool) -> Any:
        at = datetime.now(UTC)
        self.entries.append({"request_id": request_id, "staff_id": staff.sub, "role": staff.role, "area": staff.area,
                             "reason": reason, "erased": erased, "at": at})
        return SimpleNamespace(time=at)

    async def admin_changed(self, staff: Any, action: str, target: str, *, reason: str | None = None,
                            details: dict[str, Any] | None = None) -> Any:
        at = datetime.now(UTC)
        self.entries.append({"action": action, "target": target, "staff_id": staff.sub, "reason": reason,
                             "details": details or {}, "at": at})
        return SimpleNamespace(time=at)

    async def contact_reads(self, request_id: str) -> list[dict[str, Any]]:
        return [{k: e[k] for k in ("request_id", "staff_id", "role", "area", "reason", "at")}
                for e in self.entries if e.get("request_id") == request_id]


class InMemoryCatalogue(ServiceCatalogue):
    """The catalogue's documents in a dict (the same shape and upcaster as the store's), a saved
    change's event at once in ``published``."""

    def __init__(self, *, source: str = "/civicgrid/intake") -> None:
        super().__init__(source=source)
        self.documents: dict[str, dict[str, Any]] = {}
        self.published: list[Envelope] = []

    @classmethod
    def with_defaults(cls, *, source: str = "/civicgrid/intake") -> InMemoryCatalogue:
        """The shipped catalogue at revision 1, ready to read (no event loop needed)."""
        catalogue = cls(source=source)
        now = datetime.now(UTC)
        for svc in DEFAULT_CATALOGUE:
            held = svc.model_copy(update={"revision": 1, "changed_at": now})
            catalogue.documents[svc.code] = to_document(held)
            catalogue._cache[svc.code] = held
        return catalogue

    async def _documents(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(d) for d in self.documents.values()]

    async def _document(self, code: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.documents.get(code))

    async def _insert(self, doc: dict[str, Any], event: Envelope) -> bool:
        if doc["_id"] in self.documents:
            return False
        self.documents[doc["_id"]] = copy.deepcopy(doc)
        self.published.append(event)
        return True

    async def _replace(self, code: str, revision: int, fields: dict[str, Any], event: Envelope) -> bool:
        stored = self.documents.get(code)
        if stored is None or stored.get("revision") != revision:
            return False
        stored.update(copy.deepcopy(fields))
        self.published.append(event)
        return True
