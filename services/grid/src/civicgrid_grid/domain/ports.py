"""What handlers need from storage: the repository / unit-of-work port. Two adapters implement it,
``adapters.repos`` (MongoDB protocol, through the runtime's outbox) and ``adapters.memory`` (an
in-memory fake for unit tests); ``tests/contract`` runs the same assertions against both.

Saving a request is the unit of work: its state, the id of the event that caused the change and
the events the change causes go in ONE single-document write, guarded by the document's
``version`` (optimistic concurrency), then the events are published (exactly once per effect:
the outbox survives a crash between write and publish)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from civicgrid_contracts import Envelope
from civicgrid_grid.domain.assignment import Staff
from civicgrid_grid.domain.request import RequestCase
from civicgrid_grid.domain.roster import Post, StaffMember

#: one load reservation asked for: (staff id, request id, limited by the person's load limit)
Want = tuple[str, str, bool]


class RequestStore(Protocol):
    async def get(self, rid: str) -> RequestCase | None: ...

    async def get_many(self, ids: Sequence[str]) -> dict[str, RequestCase]: ...

    async def insert_new(self, items: Sequence[tuple[RequestCase, Sequence[Envelope]]], *,
                         crash_point_name: str | None = None) -> set[str]:
        """Insert new requests with the events each caused and publish them; returns the ids
        inserted now. A request already stored (a redelivered cause) is left as it is and the
        events it kept are published again."""

    async def save(self, case: RequestCase, events: Sequence[Envelope] = (), *,
                   cause_id: str | None = None) -> bool:
        """Write ``case`` if nobody changed it since it was read (its ``version``) and, with
        ``cause_id``, if that event was not applied yet; publish ``events``. False when a guard
        refused (the case is left as it was read)."""

    async def save_many(self, cases: Sequence[tuple[RequestCase, str]]) -> None:
        """Event-caused changes without events of their own, in one round trip (guards as ``save``;
        a refused one was applied by an earlier delivery or is retried by the cause's redelivery)."""

    async def open_held_by(self, assignee_id: str, *, limit: int = 1000) -> list[RequestCase]:
        """A work queue: open requests held by someone, urgent first, then by response deadline."""

    async def open_dispatched_to(self, department: str, *, limit: int = 1000) -> list[RequestCase]: ...


class StaffStore(Protocol):
    """Staff documents: the assigner's load counters (guarded by the load read) and the roster's
    profile and duty (guarded by the document's ``version``); the two commute."""

    async def get(self, sid: str) -> dict[str, Any] | None: ...

    async def read_many(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def staff_of(self, doc: dict[str, Any]) -> Staff: ...

    async def member(self, sid: str) -> StaffMember | None: ...

    async def members(self, ids: Sequence[str]) -> dict[str, StaffMember]: ...

    async def members_under(self, area: str, *, limit: int = ...) -> list[StaffMember]:
        """The staff whose area lies in ``area`` (a code prefix), by id."""

    async def create(self, member: StaffMember, events: Sequence[Envelope] = ()) -> bool:
        """Claim the member's id (False when taken) and publish ``events`` with it."""

    async def save_member(self, member: StaffMember, events: Sequence[Envelope] = ()) -> bool:
        """Write profile and duty if the document is still at ``member.version``; publish ``events``."""

    async def reserve_many(self, wants: Sequence[Want], *,
                           read: dict[str, dict[str, Any]] | None = None) -> set[tuple[str, str]]:
        """Reserve one unit of load per want, in order, each guarded by the load just read;
        returns the granted (staff id, request id) pairs. One already held is granted again
        without counting twice."""

    async def release(self, sid: str | None, rid: str) -> None: ...

    async def upsert_many(self, docs: Sequence[dict[str, Any]]) -> None: ...


class RosterStore(Protocol):
    async def post(self, pid: str) -> Post | None: ...

    async def posts_under(self, area: str, *, limit: int = ...) -> list[Post]:
        """The posts whose area lies in ``area`` (a code prefix), by id."""

    async def posts_held_by(self, sid: str) -> list[Post]: ...

    async def save_post(self, post: Post, events: Sequence[Envelope] = ()) -> bool:
        """Write the holders if the post is still at ``post.version``; publish ``events``."""

    async def posts_for(self, areas: Sequence[str], lines: Iterable[str]) -> dict[tuple[str, str], dict]: ...

    async def chain_for(self, keys: Sequence[str]) -> dict[str, str]: ...

    async def known_departments(self, ids: Sequence[str]) -> set[str]: ...

    async def list_departments(self) -> list[dict[str, Any]]: ...

    async def upsert(self, kind: str, docs: Sequence[dict[str, Any]]) -> None: ...


class CatalogueStore(Protocol):
    async def apply(self, doc: dict[str, Any]) -> bool:
        """Keep the entry unless an equal or newer revision is there; True when written."""

    async def get_many(self, codes: Sequence[str]) -> dict[str, dict[str, Any]]: ...
