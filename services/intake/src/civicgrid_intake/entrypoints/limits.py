"""Abuse limits of intake's public endpoints, as FastAPI dependencies: per client (the IP address;
on Open311's POST the ``api_key``), counted in the store and so shared by every replica (see
``civicgrid_runtime.ratelimit``). Over the limit: 429 with ``Retry-After`` -- problem details on the
native API, Open311's error list on its paths (http.py renders every Problem there that way)."""

from __future__ import annotations

from fastapi import Request

from civicgrid_runtime.problems import Problem
from civicgrid_runtime.ratelimit import Limit


def client_address(request: Request) -> str:
    """The caller's address (behind a proxy: the one it forwarded, when uvicorn trusts that proxy)."""
    return request.client.host if request.client else "unknown"


async def _count(request: Request, limit: Limit, client: str) -> None:
    retry = await request.app.state.service.limiter.hit(limit, client)
    if retry is None:
        return
    window = request.app.state.settings.rate_limit_window_seconds
    detail = f"More than {limit.requests} requests of this kind in {window:g} s; retry in {retry} s."
    raise Problem(429, "Too many requests", detail, type_="rate-limited", headers={"Retry-After": str(retry)})


async def limit_submissions(request: Request) -> None:
    await _count(request, request.app.state.settings.submission_limit, client_address(request))


async def limit_reads(request: Request) -> None:
    await _count(request, request.app.state.settings.read_limit, client_address(request))


async def limit_open311_submissions(request: Request) -> None:
    """Per ``api_key`` (each Open311 client has its own); without one, per address. The body was
    capped by the runtime before this parses the form (which the view then reuses)."""
    key = (await request.form()).get("api_key")
    client = f"api_key:{key}" if isinstance(key, str) and key else client_address(request)
    await _count(request, request.app.state.settings.submission_limit, client)
