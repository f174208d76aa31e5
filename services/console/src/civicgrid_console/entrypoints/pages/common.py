"""Home, language switch, sign-in (the identity provider's authorization code flow; the development
sign-in beside it in development) and sign-out, the map outline the pages' scripts draw."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse

from civicgrid_console.adapters.oidc import ProviderUnavailable
from civicgrid_console.domain import i18n
from civicgrid_console.domain.session import LANGUAGES
from civicgrid_console.domain.signin import SignInRefused
from civicgrid_console.entrypoints.web import PageProblem, console_of, render, session_of
from civicgrid_console.handlers import resident
from civicgrid_console.handlers import signin as signin_flow
from civicgrid_runtime.logging import get_logger

log = get_logger("civicgrid.console.signin")

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
    method = console_of(request).dev_sign_in
    accounts = await method.accounts() if method else []
    return render(request, "signin.html", accounts=accounts, next=safe_next(next), dev=method,
                  oidc=console_of(request).oidc is not None)


@router.post("/signin")
async def sign_in(request: Request, sub: str = Form(..., min_length=1, max_length=100),
                  role: str = Form(...), area: str = Form("", pattern=r"^\d{0,15}$"), label: str = Form(""),
                  next: str = Form("")):
    """The development sign-in: a demo person picked on the page (absent outside development)."""
    s = session_of(request)
    method = console_of(request).dev_sign_in
    if method is None:
        raise PageProblem(404, "signin.unavailable")
    try:
        who = method.identity(sub=sub.strip(), role=role, area=area, label=label)
    except ValueError:
        raise PageProblem(422, "error.invalid_form") from None
    s.sign_in(sub=who.sub, role=who.role, area=who.area, token=who.token, label=who.label, method="development")
    s.flash("ok", i18n.t(s.lang, "signin.done", label=who.label))
    return RedirectResponse(safe_next(next) or HOME_OF.get(who.role, "/"), status_code=303)


def provider_of(request: Request):
    provider = console_of(request).oidc
    if provider is None:
        raise PageProblem(404, "signin.unavailable")
    return provider


@router.get("/auth/login")
async def oidc_sign_in(request: Request, next: str = ""):
    """Off to the identity provider, with a new state, nonce and PKCE challenge kept in the session."""
    provider = provider_of(request)
    try:
        url = await signin_flow.begin(session_of(request), provider, next_path=safe_next(next), now=time.time())
    except ProviderUnavailable as exc:
        log.warning("identity provider unreachable", error=str(exc))
        raise PageProblem(503, "signin.provider_unavailable") from None
    return RedirectResponse(url, status_code=303)


@router.get("/auth/callback")
async def oidc_callback(request: Request, state: str = "", code: str = "", error: str = "",
                        error_description: str = ""):
    """The provider's answer: accepted only for a sign-in this browser started (state), with the
    code traded by its PKCE verifier and an ID token carrying its nonce."""
    s = session_of(request)
    provider = provider_of(request)
    try:
        attempt = await signin_flow.complete(s, provider, state=state[:200], code=code[:2000],
                                             error=(error_description or error)[:300], now=time.time())
    except SignInRefused as exc:
        log.warning("sign-in refused", reason=exc.reason, detail=exc.detail)
        raise PageProblem(403 if exc.reason == "role" else 400, f"signin.refused.{exc.reason}") from None
    except ProviderUnavailable as exc:
        log.warning("identity provider unreachable", error=str(exc))
        raise PageProblem(503, "signin.provider_unavailable") from None
    s.flash("ok", i18n.t(s.lang, "signin.done", label=s.label))
    return RedirectResponse(attempt.next or HOME_OF.get(s.role or "", "/"), status_code=303)


@router.post("/signout")
async def sign_out(request: Request):
    s = session_of(request)
    c = console_of(request)
    where = await signin_flow.sign_out(s, c.oidc, home_url=f"{c.settings.base_url}/")
    s.flash("ok", i18n.t(s.lang, "signin.out"))
    return RedirectResponse(where, status_code=303)


_outline: dict[str, Any] = {"at": 0.0, "body": None}


@router.get("/map/grids.geojson")
async def grid_outline(request: Request):
    """The current map's grids as GeoJSON for Leaflet (kept a minute: every report page draws it)."""
    if _outline["body"] is None or time.monotonic() - _outline["at"] > 60:
        fc = await resident.map_outline(console_of(request).apis)
        fc["features"] = [f for f in fc.get("features", []) if (f.get("properties") or {}).get("kind") == "grid"]
        _outline.update(at=time.monotonic(), body=fc)
    return JSONResponse(_outline["body"], headers={"Cache-Control": "max-age=60"})
