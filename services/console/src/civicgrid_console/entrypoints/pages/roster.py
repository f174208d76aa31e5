"""The staff roster with its A/B posts (administrators edit it, supervisors read their area and set
their people's duty) and a staff member's own duty from their queue page.

A form grid refuses comes back as the same page with each refused field marked and its message
beside it (422); any other refusal is a message on the page the visitor came from."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from civicgrid_console.adapters.api import ApiError
from civicgrid_console.domain import i18n
from civicgrid_console.domain import roster as rules
from civicgrid_console.domain.session import Session
from civicgrid_console.entrypoints.web import api_message, console_of, need, render, session_of
from civicgrid_console.handlers import roster

router = APIRouter()
Admin = Depends(need("admin"))
Reader = Depends(need("supervisor"))  # administrators too (need lets them in everywhere)
Staff = Depends(need("grid_worker", "supervisor"))


@router.get("/admin/roster")
async def roster_page(request: Request, street: str = "", community: str = "", grid: str = "",
                      s: Session = Reader):
    chosen = rules.picked(street, community, grid, default=s.area if s.role == "supervisor" else "")
    return await _page(request, s, chosen)


async def _page(request: Request, s: Session, chosen: rules.Picked, status: int = 200, *,
                failed: str = "", errors: dict[str, str] | None = None, sent: dict[str, Any] | None = None):
    """The roster page of the chosen area; ``failed`` names the form grid refused, ``errors`` its
    fields' messages and ``sent`` what the visitor had typed (shown again)."""
    apis = console_of(request).apis
    options = await roster.pickers(apis, chosen)
    data, problem = {"posts": [], "people": []}, None
    if chosen.area:
        try:
            data = await roster.roster_of(apis, s.token, chosen.area)
        except ApiError as exc:
            problem = api_message(s.lang, exc)
    lang = s.lang
    return render(request, "admin_roster.html", status, chosen=chosen, options=options, problem=problem,
                  posts=data["posts"], people=data["people"], back=f"{rules.BACK}?{chosen.query()}",
                  failed=failed, errors=errors or {}, sent=sent or {}, editable=s.role == "admin",
                  serving=lambda p: rules.serving_text(lang, p), lines=rules.LINES, duties=rules.DUTIES)


async def _submit(request: Request, s: Session, form_id: str, call, *, ok: str):
    """Send a roster form: back to the page with a message, or the page again with the refused
    fields marked."""
    form = await request.form()
    back = rules.safe_back(str(form.get("back") or ""))
    try:
        await call(form)
    except rules.FormErrors as exc:
        return await _refused(request, s, back, form_id, {k: i18n.t(s.lang, v) for k, v in exc.errors.items()}, form)
    except ApiError as exc:
        if exc.status == 422 and exc.errors:
            return await _refused(request, s, back, form_id, rules.field_errors(s.lang, exc.errors), form)
        session_of(request).flash("error", _readable(s.lang, exc))
        return RedirectResponse(back, status_code=303)
    session_of(request).flash("ok", ok)
    return RedirectResponse(back, status_code=303)


async def _refused(request: Request, s: Session, back: str, form_id: str, errors: dict[str, str], form):
    session_of(request).flash("error", i18n.t(s.lang, "roster.refused", fields=", ".join(
        i18n.t(s.lang, f"roster_field.{k}") if i18n.has(f"roster_field.{k}") else k for k in errors)))
    query = {k: v[0] for k, v in parse_qs(back.partition("?")[2]).items()}
    chosen = rules.picked(query.get("street", ""), query.get("community", ""), query.get("grid", ""))
    sent = {k: form.getlist(k) if k == "lines" else str(form.get(k) or "") for k in form}
    return await _page(request, s, chosen, 422, failed=form_id, errors=errors, sent=sent)


def _readable(lang: str, exc: ApiError) -> str:
    if exc.status == 409:
        return f"{i18n.t(lang, 'roster.err.conflict')} {rules.error_text(lang, exc.detail)}"
    return api_message(lang, exc)


@router.post("/admin/roster/posts/{pid}")
async def change_post(request: Request, pid: str, s: Session = Admin):
    apis = console_of(request).apis
    return await _submit(request, s, f"post-{pid}", lambda form: roster.change_post(
        apis, s.token, pid, rules.post_body(form), str(form.get("reason") or "")), ok=i18n.t(s.lang, "roster.saved"))


@router.post("/admin/roster/staff/{sid}/duty")
async def set_duty(request: Request, sid: str, s: Session = Reader):
    c = console_of(request)
    return await _submit(request, s, f"duty-{sid}", lambda form: roster.set_duty(
        c.apis, s.token, sid, rules.duty_body(form, c.tz), str(form.get("reason") or "")),
        ok=i18n.t(s.lang, "roster.duty_saved", who=sid))


@router.post("/admin/roster/staff/{sid}")
async def update_member(request: Request, sid: str, s: Session = Admin):
    apis = console_of(request).apis
    return await _submit(request, s, f"profile-{sid}", lambda form: roster.update_member(
        apis, s.token, sid, rules.profile_body(form), str(form.get("reason") or "")), ok=i18n.t(s.lang, "roster.saved"))


@router.post("/admin/roster/staff")
async def add_member(request: Request, s: Session = Admin):
    apis = console_of(request).apis
    return await _submit(request, s, "add", lambda form: roster.add_member(
        apis, s.token, rules.new_member_body(form), str(form.get("reason") or "")), ok=i18n.t(s.lang, "roster.added"))


@router.post("/work/duty")
async def own_duty(request: Request, s: Session = Staff):
    """A staff member sets themselves away (until a time, or until they are back) or back on duty."""
    c = console_of(request)
    form = await request.form()
    try:
        await roster.set_own_duty(c.apis, s.token, rules.duty_body(form, c.tz, own=True))
    except rules.FormErrors as exc:
        session_of(request).flash("error", " ".join(i18n.t(s.lang, v) for v in exc.errors.values()))
    except ApiError as exc:
        message = ", ".join(rules.field_errors(s.lang, exc.errors).values()) if exc.errors else _readable(s.lang, exc)
        session_of(request).flash("error", message)
    else:
        session_of(request).flash("ok", i18n.t(s.lang, "roster.me_saved"))
    return RedirectResponse("/work", status_code=303)
