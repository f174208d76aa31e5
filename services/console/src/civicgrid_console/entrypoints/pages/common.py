"""Home, language switch, sign-in and sign-out, the map outline the pages' scripts draw."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse

from civicgrid_console.domain import i18n
from civicgrid_console.domain.session import LANGUAGES
from civicgrid_console.entrypoints.web import PageProblem, console_of, render, session_of
from civicgrid_console.handlers import resident

router = APIRouter()

HOME_OF = {"grid_worker": "/work", "supervisor": "/supervise", "department": "/dispatches",
           "volunteer": "/volunteer", "auditor": "/audit", "admin": "/admin"}


def safe_next(value: str | None) -> str:
    """Only a path on this site (no open redirect)."""
    return value if value and value.startswith("/") and not value.startswith("//") else ""


@router.get("/")
async def home(request: Request):
    return render(request, "home.html")


@router.post("/lang")
async def switch_language(request: Request, lang: str = Form(...), next: str = Form("/")):
    if lang in LANGUAGES:
        session_of(request).lang = lang
    return RedirectResponse(safe_next(next) or "/", status_code=303)


@router.get("/signin")
async def sign_in_page(request: Request, next: str = ""):
    method = console_of(request).sign_in
    accounts = await method.accounts() if method else []
    return render(request, "signin.html", accounts=accounts, next=safe_next(next), method=method)


@router.post("/signin")
async def sign_in(request: Request, sub: str = Form(..., min_length=1, max_length=100),
                  role: str = Form(...), area: str = Form("", pattern=r"^\d{0,15}$"), label: str = Form(""),
                  next: str = Form("")):
    s = session_of(request)
    method = console_of(request).sign_in
    if method is None:
        raise PageProblem(404, "signin.unavailable")
    try:
        who = method.identity(sub=sub.strip(), role=role, area=area, label=label)
    except ValueError:
        raise PageProblem(422, "error.invalid_form") from None
    s.sign_in(sub=who.sub, role=who.role, area=who.area, token=who.token, label=who.label)
    s.flash("ok", i18n.t(s.lang, "signin.done", label=who.label))
    return RedirectResponse(safe_next(next) or HOME_OF.get(who.role, "/"), status_code=303)


@router.post("/signout")
async def sign_out(request: Request):
    s = session_of(request)
    s.sign_out()
    s.flash("ok", i18n.t(s.lang, "signin.out"))
    return RedirectResponse("/", status_code=303)


_outline: dict[str, Any] = {"at": 0.0, "body": None}


@router.get("/map/grids.geojson")
async def grid_outline(request: Request):
    """The current map's grids as GeoJSON for Leaflet (kept a minute: every report page draws it)."""
    if _outline["body"] is None or time.monotonic() - _outline["at"] > 60:
        fc = await resident.map_outline(console_of(request).apis)
        fc["features"] = [f for f in fc.get("features", []) if (f.get("properties") or {}).get("kind") == "grid"]
        _outline.update(at=time.monotonic(), body=fc)
    return JSONResponse(_outline["body"], headers={"Cache-Control": "max-age=60"})
