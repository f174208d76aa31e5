"""Auditor pages: timeline with "as of", log verification and checkpoints, inclusion proof."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from civicgrid_console.adapters.api import ApiError
from civicgrid_console.domain.session import Session
from civicgrid_console.entrypoints.web import PageProblem, api_message, console_of, need, render
from civicgrid_console.handlers import auditor

router = APIRouter()
Auditor = Depends(need("auditor"))


@router.get("/audit")
async def audit_home(request: Request, s: Session = Depends(need("auditor", "supervisor"))):
    return render(request, "audit.html")


@router.get("/audit/timeline")
async def timeline(request: Request, rid: str = "", as_of: str = "",
                   s: Session = Depends(need("auditor", "supervisor"))):
    c = console_of(request)
    try:
        moment = auditor.as_of_moment(as_of, c.tz)
    except ValueError:
        raise PageProblem(422, "error.invalid_form") from None
    data = await auditor.timeline(c.apis, s.token, rid.strip(), moment) if rid.strip() else None
    return render(request, "timeline.html", rid=rid, as_of=as_of, moment=moment, data=data)


@router.get("/audit/logs")
async def logs(request: Request, s: Session = Auditor):
    return render(request, "audit_logs.html", logs=await auditor.logs(console_of(request).apis, s.token))


@router.get("/audit/proof")
async def proof(request: Request, event_id: str = "", s: Session = Auditor):
    data, error = None, None
    if event_id.strip():
        try:
            data = await auditor.proof(console_of(request).apis, s.token, event_id.strip())
        except ApiError as exc:
            error = api_message(s.lang, exc)
    return render(request, "proof.html", event_id=event_id, data=data, error=error)
