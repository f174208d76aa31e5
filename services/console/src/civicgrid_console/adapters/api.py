"""The four services' public HTTP APIs, called with the signed-in person's own bearer token.

One ``httpx.AsyncClient`` per service (keep-alive). A non-2xx answer becomes ``ApiError`` carrying
the problem details the services send (RFC 9457: title, detail, the fields named in ``errors``);
the pages turn it into a readable message, never a stack trace or raw JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from civicgrid_runtime.accesslog import current_request_id


@dataclass
class ApiError(Exception):
    status: int
    title: str
    detail: str = ""
    errors: list[dict[str, Any]] = field(default_factory=list)
    service: str = ""

    def __str__(self) -> str:
        return f"{self.service} {self.status} {self.title}: {self.detail}"

    @classmethod
    def from_response(cls, service: str, r: httpx.Response) -> ApiError:
        try:
            body = r.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        detail = body.get("detail")
        if not isinstance(detail, str):  # FastAPI's own 4xx put a list here
            detail = ""
        return cls(status=r.status_code, title=str(body.get("title") or r.reason_phrase or "error"), detail=detail,
                   errors=[e for e in body.get("errors") or [] if isinstance(e, dict)], service=service)


class ServiceUnavailable(ApiError):
    pass


class ServiceApi:
    """One service: JSON in, JSON out, problems raised."""

    def __init__(self, name: str, base_url: str, timeout: float) -> None:
        self.name = name
        self.client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout)

    async def call(self, method: str, path: str, *, token: str | None = None, json: Any = None,
                   params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                   raw: bool = False) -> Any:
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        if rid := current_request_id():  # the page's request id on the service's log lines too
            h.setdefault("X-Request-ID", rid)
        try:
            r = await self.client.request(method, path, json=json, params=_clean(params), headers=h)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(503, "unavailable", f"{type(exc).__name__}", service=self.name) from exc
        if r.status_code >= 400:
            raise ApiError.from_response(self.name, r)
        if raw:
            return r
        return r.json() if r.content else None

    async def ping(self) -> bool:
        try:
            r = await self.client.get("/health/live", timeout=2)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    async def close(self) -> None:
        await self.client.aclose()


def _clean(params: dict[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {k: v for k, v in params.items() if v not in (None, "")}


@dataclass
class Apis:
    intake: ServiceApi
    grid: ServiceApi
    matching: ServiceApi
    audit: ServiceApi

    def all(self) -> list[ServiceApi]:
        return [self.intake, self.grid, self.matching, self.audit]

    async def close(self) -> None:
        for api in self.all():
            await api.close()
