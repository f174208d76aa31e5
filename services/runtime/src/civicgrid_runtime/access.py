"""Staff access to personal data and administrative changes, recorded as events (``staff.access.v1``).

A service records the act before it answers: the event goes into a small collection of its own
with its outbox entry in the same write, and the runtime's outbox relay publishes it (at once, or
after a crash by its sweep). So no read of a contact and no change is answered without its event
on the way to audit's trail. The stored document keeps who, what and why -- never the data read.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.access import AdminAction, AdminChanged, ContactRead
from civicgrid_runtime.auth import Principal
from civicgrid_runtime.store import OUTBOX, PENDING, OutboxRelay, update_with_events

COLLECTION = "staff_access"


def admin_change_payload(staff: Principal, action: AdminAction, target: str, *, reason: str | None = None,
                         details: dict[str, Any] | None = None) -> AdminChanged:
    """What an administrative change says: who, which action on which object (the key
    ``<kind>:<target>``), why, and non-personal details."""
    kind = action.split(".", 1)[0]
    return AdminChanged(request_id=f"{kind}:{target}", staff_id=staff.sub, role=staff.role, area=staff.area,
                        reason=reason, action=action, target=str(target), details=details or {})


def admin_change(staff: Principal, action: AdminAction, target: str, *, source: str, reason: str | None = None,
                 details: dict[str, Any] | None = None) -> Envelope:
    """The event of an administrative change, for a write that keeps it in the changed document's
    own outbox: the change and its record are then one atomic write (nothing in ``staff_access``)."""
    return Envelope.wrap(admin_change_payload(staff, action, target, reason=reason, details=details), source=source)


class AccessTrail:
    def __init__(self, col: AsyncCollection, relay: OutboxRelay | None, *, source: str) -> None:
        self.col, self.relay, self.source = col, relay, source

    @classmethod
    def collection(cls, db: AsyncDatabase) -> AsyncCollection:
        """The collection to hand the runtime's outbox relay together with the service's own."""
        return db[COLLECTION]

    async def contact_read(self, staff: Principal, request_id: str, reason: str, *, erased: bool) -> Envelope:
        return await self._record(ContactRead(request_id=request_id, staff_id=staff.sub, role=staff.role,
                                              area=staff.area, reason=reason, erased=erased))

    async def admin_changed(self, staff: Principal, action: AdminAction, target: str, *, reason: str | None = None,
                            details: dict[str, Any] | None = None) -> Envelope:
        return await self._record(admin_change_payload(staff, action, target, reason=reason, details=details))

    async def _record(self, payload: ContactRead | AdminChanged) -> Envelope:
        env = Envelope.wrap(payload, source=self.source)
        summary = {"schema_version": 1, "type": env.type, "subject": env.subject, "at": env.time,
                   **payload.model_dump(mode="json", exclude={"request_id"})}
        await update_with_events(self.col, self.relay, filter={"_id": env.id}, update={"$setOnInsert": summary},
                                 events=[env], upsert=True)
        return env

    async def contact_reads(self, request_id: str) -> list[dict[str, Any]]:
        """This service's own record of who read a request's contact (audit has every service's)."""
        docs = await self.col.find({"subject": request_id, "type": ContactRead.event_type},
                                   {"_id": 0, OUTBOX: 0, PENDING: 0}).sort("at", 1).to_list(None)
        return [{"request_id": d["subject"], **{k: d.get(k) for k in ("staff_id", "role", "area", "reason", "at")}}
                for d in docs]
