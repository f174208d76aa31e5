"""Resident pages (mobile-first): catalogue, report form, tracking, rating."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from civicgrid_console.adapters.api import ApiError
from civicgrid_console.domain import i18n
from civicgrid_console.domain.forms import FormInvalid, questions
from civicgrid_console.domain.work import RATEABLE, RATINGS
from civicgrid_console.entrypoints.web import api_message, console_of, live_page, render, session_of
from civicgrid_console.handlers import resident

router = APIRouter()


@router.get("/report")
async def catalogue(request: Request, q: str = ""):
    groups = await resident.catalogue(console_of(request).apis, q)
    template = "_catalogue.html" if request.headers.get("HX-Request") else "report_catalogue.html"
    return render(request, template, groups=groups, q=q)


def report_page(request: Request, svc: dict, status: int = 200, form=None, errors: list[str] | None = None):
    """The report form, its questions in the visitor's language; a refused one as it was typed."""
    chosen = {k: form.getlist(k) for k in form.keys()} if form is not None else {}
    return render(request, "report_form.html", status, svc=svc, asked=questions(svc, session_of(request).lang),
                  values=dict(form or {}), chosen=chosen, errors=errors or [])


@router.get("/report/{code}")
async def report_form(request: Request, code: str):
    return report_page(request, await resident.service(console_of(request).apis, code))


@router.post("/report/{code}")
async def send_report(request: Request, code: str):
    c, s = console_of(request), session_of(request)
    svc = await resident.service(c.apis, code)
    form = await request.form()
    try:
        created = await resident.submit(c.apis, svc, form)
    except FormInvalid as exc:
        return report_page(request, svc, 422, form, [i18n.t(s.lang, key) for _, key in exc.errors])
    except ApiError as exc:
        return report_page(request, svc, exc.status if 400 <= exc.status < 500 else 502, form,
                           [api_message(s.lang, exc)])
    rid = created["request_id"]
    s.track(rid, created["token"])
    if created.get("duplicate_of"):
        s.flash("ok", i18n.t(s.lang, "report.duplicate", n=created.get("followers") or 2))
    else:
        s.flash("ok", i18n.t(s.lang, "report.sent", rid=rid))
    return RedirectResponse(f"/track/{rid}?token={created['token']}", status_code=303)


@router.get("/track")
async def my_reports(request: Request):
    return render(request, "track_list.html", tracked=session_of(request).tracked)


@live_page(router, "/track/{rid}")
async def track(request: Request, rid: str, token: str = ""):
    s = session_of(request)
    token = token or s.tracked.get(rid, "")
    req = await resident.read(console_of(request).apis, rid, token)
    s.track(rid, token)
    link = str(request.url_for("track", rid=rid).include_query_params(token=token))
    return render(request, "track.html", req=req, token=token, link=link,
                  can_rate=req["status"] in RATEABLE and not req.get("duplicate_of"), ratings=RATINGS)


@router.post("/track/{rid}/rating")
async def rate(request: Request, rid: str, token: str = Form(...), rating: str = Form(...), comment: str = Form("")):
    s = session_of(request)
    try:
        after = await resident.rate(console_of(request).apis, rid, token, rating, comment)
    except ApiError as exc:
        s.flash("error", api_message(s.lang, exc))
    else:
        s.flash("ok", i18n.t(s.lang, "track.reopened" if after.get("status") == "reopened" else "track.rated"))
    return RedirectResponse(f"/track/{rid}?token={token}", status_code=303)
