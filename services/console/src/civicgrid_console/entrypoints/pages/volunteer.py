"""Volunteer pages: offers to accept or decline, bookings, check-in/out, hours."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse

from civicgrid_console.adapters.api import ApiError
from civicgrid_console.domain import i18n
from civicgrid_console.domain.session import Session
from civicgrid_console.entrypoints.web import (
    PageProblem,
    act,
    api_message,
    console_of,
    live_page,
    need,
    render,
)
from civicgrid_console.handlers import volunteer

router = APIRouter()
Volunteer = Depends(need("volunteer"))


@live_page(router, "/volunteer")
async def page(request: Request, s: Session = Volunteer):
    data = await volunteer.overview(console_of(request).apis, s.token)
    return render(request, "volunteer.html", **data, bookings=s.bookings)


@router.post("/volunteer/offers/{offer_id}/{answer}")
async def answer_offer(request: Request, offer_id: str, answer: str, reason: str = Form(""),
                       s: Session = Volunteer):
    if answer not in ("accept", "decline"):
        raise PageProblem(404, "error.not_found")
    try:
        out = await volunteer.answer(console_of(request).apis, s.token, offer_id, answer == "accept", reason.strip())
    except ApiError as exc:
        s.flash("error", api_message(s.lang, exc))
    else:
        if answer == "accept":
            s.bookings[out["request_id"]] = {"needed_from": out.get("needed_from"),
                                             "needed_hours": out.get("needed_hours")}
        s.flash("ok", i18n.t(s.lang, "vol.accepted" if answer == "accept" else "vol.declined"))
    return RedirectResponse("/volunteer", status_code=303)


@router.post("/volunteer/assignments/{rid}/{step}")
async def check_in_out(request: Request, rid: str, step: str, s: Session = Volunteer):
    if step not in ("check-in", "check-out"):
        raise PageProblem(404, "error.not_found")
    label = "vol.check_in" if step == "check-in" else "vol.check_out"
    return await act(request, volunteer.check(console_of(request).apis, s.token, rid, step), back="/volunteer",
                     ok=i18n.t(s.lang, "work.done", action=i18n.t(s.lang, label)))
