"""What every page shares: the session (encrypted cookie), CSRF checks on every form, role guards,
security headers (a strict Content-Security-Policy: scripts and styles only from this origin, no
inline ones), rendering in the visitor's language, and API problems shown as readable messages."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from civicgrid_console.adapters.api import ApiError, ServiceUnavailable
from civicgrid_console.adapters.session_cookie import COOKIE_NAME
from civicgrid_console.bootstrap import PACKAGE, Console
from civicgrid_console.domain import i18n
from civicgrid_console.domain.session import Session
from civicgrid_console.handlers import signin as signin_flow

templates = Jinja2Templates(directory=str(PACKAGE / "templates"))

#: what each role finds in the navigation (admin sees every page, as the services let it)
NAV: dict[str, list[tuple[str, str]]] = {
    "grid_worker": [("/work", "nav.queue")],
    "supervisor": [("/supervise", "nav.supervise"), ("/supervise/kpis", "nav.kpis"),
                   ("/supervise/evaluation", "nav.evaluation"), ("/work", "nav.queue"), ("/admin/roster", "nav.roster")],
    "department": [("/dispatches", "nav.dispatches")],
    "volunteer": [("/volunteer", "nav.offers")],
    "auditor": [("/audit", "nav.audit"), ("/supervise/kpis", "nav.kpis")],
    "admin": [("/admin", "nav.admin"), ("/supervise", "nav.supervise"), ("/audit", "nav.audit")],
}
PUBLIC_NAV = [("/report", "nav.report"), ("/track", "nav.my_reports")]


class PageProblem(Exception):
    """A page that cannot be shown: its status and the message key (with arguments) to show."""

    def __init__(self, status: int, key: str, **kw: Any) -> None:
        super().__init__(key)
        self.status, self.key, self.kw = status, key, kw


class NeedsSignIn(Exception):
    pass


def console_of(request: Request) -> Console:
    return request.app.state.console


def session_of(request: Request) -> Session:
    return request.state.session


def now() -> datetime:
    return datetime.now(timezone.utc)


def content_security_policy(tile_url: str) -> str:
    img = "'self' data:"
    if tile_url:
        origin = "/".join(tile_url.split("/")[:3])
        img += f" {origin}"
    return ("default-src 'self'; script-src 'self'; style-src 'self'; "
            f"img-src {img}; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
            "form-action 'self'; frame-ancestors 'none'")


def install(app, console: Console) -> None:
    """The session and security-header middleware."""
    csp = content_security_policy(console.settings.tile_url)
    # a console reached over https never sends its session (which holds the staff's tokens) in clear
    secure = console.settings.secure_cookies or console.settings.base_url.startswith("https://")

    @app.middleware("http")
    async def session_and_headers(request: Request, call_next):
        raw = request.cookies.get(COOKIE_NAME)
        request.state.session = Session.load(console.sessions.open(raw),
                                             default_lang=console.settings.default_language)
        if not request.url.path.startswith(("/static/", "/assets/", "/health/")):
            await keep_signed_in(console, request.state.session)
        response: Response = await call_next(request)
        if not request.url.path.startswith(("/static/", "/assets/", "/health/")):
            response.set_cookie(COOKIE_NAME, console.sessions.seal(request.state.session.dump()),
                                max_age=console.sessions.max_age_seconds, httponly=True, samesite="lax",
                                secure=secure, path="/")
            response.headers.setdefault("Cache-Control", "no-store")
        response.headers["Content-Security-Policy"] = csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        return response


async def keep_signed_in(console: Console, session: Session) -> None:
    """An identity provider's access token is renewed shortly before it expires; when it cannot
    be, the person is signed out and told so (the page then asks them to sign in again)."""
    if console.oidc is None or session.method != "oidc":
        return
    fresh = await signin_flow.keep_fresh(session, console.oidc, now=time.time(),
                                         margin_seconds=console.settings.token_refresh_margin_seconds)
    if not fresh:
        session.flash("error", i18n.t(session.lang, "signin.expired"))


async def csrf_protect(request: Request) -> None:
    """Every state-changing request carries the session's CSRF token (a form field, or htmx's header)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = request.headers.get("X-CSRF-Token")
    if not sent:
        form = await request.form()
        sent = str(form.get("csrf") or "")
    if not secrets.compare_digest(sent.encode(), session_of(request).csrf.encode()):
        raise PageProblem(403, "error.csrf")


def need(*roles: str):
    """Dependency factory: a signed-in person with one of ``roles`` (an administrator may open all)."""

    def check(request: Request) -> Session:
        s = session_of(request)
        if not s.signed_in:
            raise NeedsSignIn()
        if s.role != "admin" and s.role not in roles:
            raise PageProblem(403, "error.forbidden")
        return s

    return check


def render(request: Request, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    c = console_of(request)
    s = session_of(request)
    lang = s.lang

    def tr(key: str, **kw: Any) -> str:
        return i18n.t(lang, key, **kw)

    nav = list(PUBLIC_NAV) if not s.signed_in or s.role == "resident" else []
    for href, key in NAV.get(s.role or "", []):
        if (href, key) not in nav:
            nav.append((href, key))
    return templates.TemplateResponse(request, template, status_code=status_code, context={
        "t": tr, "lang": lang, "session": s, "csrf": s.csrf, "nav": nav, "path": request.url.path,
        "flashes": s.take_flashes(),
        "local": lambda v: i18n.local_time(v, c.tz), "status_label": lambda st: i18n.status_label(lang, st),
        "duration": lambda sec: i18n.duration(lang, sec), "has_t": i18n.has, "zh": i18n.simplified, "tile_url": c.settings.tile_url, **ctx})


def api_message(lang: str, exc: ApiError) -> str:
    """A readable sentence for an API problem: what kind of problem, the service's explanation and
    each field it named; never the raw body."""
    if isinstance(exc, ServiceUnavailable):
        return i18n.t(lang, "error.unavailable", service=exc.service)
    key = f"error.status.{exc.status}"
    head = i18n.t(lang, key) if i18n.has(key) else i18n.t(lang, "error.api", service=exc.service, title=exc.title)
    parts = [head]
    if exc.detail:
        parts.append(exc.detail)
    for e in exc.errors:
        parts.append(i18n.t(lang, "error.field", field=e.get("field") or e.get("feature") or "?",
                            message=e.get("message") or e.get("reason") or ""))
    return " — ".join(parts)


async def act(request: Request, action: Awaitable[Any], *, back: str, ok: str) -> RedirectResponse:
    """Run an action against an API; success and failure both come back as a message on ``back``."""
    s = session_of(request)
    try:
        await action
    except ApiError as exc:
        s.flash("error", api_message(s.lang, exc))
    else:
        s.flash("ok", ok)
    return RedirectResponse(back, status_code=303)


def sign_in_redirect(request: Request) -> RedirectResponse:
    session_of(request).flash("error", i18n.t(session_of(request).lang, "error.signin_required"))
    return RedirectResponse(f"/signin?next={quote(request.url.path)}", status_code=303)
