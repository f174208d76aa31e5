"""The ports intake's handlers use: the request store (repository and unit of work in one, since
one change is one document), the Open311 API keys and the contact access log. Adapters:
``adapters/repository.py`` (MongoDB, any MongoDB-protocol store) and ``adapters/memory.py``
(in-memory fakes for the handlers' unit tests); ``tests/contract`` runs the same assertions on both.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from civicgrid_intake.domain.submission import Submission


class AlreadyStored(Exception):
    """``RequestStore.add`` of a request id that exists (an Idempotency-Key race)."""


class RequestStore(Protocol):
    async def get(self, request_id: str) -> Submission | None:
        """The aggregate, or None."""

    async def get_many(self, request_ids: Iterable[str]) -> dict[str, Submission]:
        """The aggregates found (one read)."""

    async def add(self, sub: Submission) -> None:
        """Store a new request and its pending events in one write; the events are then published
        (exactly once per effect, also after a crash). Raises ``AlreadyStored``."""

    async def save(self, sub: Submission) -> bool:
        """Store a changed aggregate and its pending events in one write, only if nobody saved it
        since it was loaded (``version``); False if someone did (reload and try again)."""

    async def read(self, request_id: str) -> dict[str, Any] | None:
        """The request as readers see it (``documents.view``)."""

    async def search(self, *, ids: list[str] | None = None, statuses: list[str] | None = None,
                     service_codes: list[str] | None = None, area: str | None = None,
                     start: datetime | None = None, end: datetime | None = None,
                     after: tuple[datetime, str] | None = None, skip: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        """Views, newest first (received_at, then id, descending)."""


class ApiKeyStore(Protocol):
    async def mint(self, name: str, *, key: str | None = None) -> str: ...

    async def check(self, key: str | None) -> dict[str, Any] | None: ...


class AccessTrailPort(Protocol):
    """Staff reads of contact details and admin changes, each an event for audit's trail
    (``civicgrid_runtime.access.AccessTrail`` on the store; a fake in memory)."""

    async def contact_read(self, staff: Any, request_id: str, reason: str, *, erased: bool) -> Any: ...

    async def admin_changed(self, staff: Any, action: str, target: str, *, reason: str | None = None,
                            details: dict[str, Any] | None = None) -> Any: ...

    async def contact_reads(self, request_id: str) -> list[dict[str, Any]]: ...
