"""What every page shares: the session (encrypted cookie), CSRF checks on every form, role guards,
security headers (a strict Content-Security-Policy: scripts and styles only from this origin, no
inline ones), rendering in the visitor's language, API problems shown as readable messages, and
the live regions pages refresh without a reload (docs/adr/0303)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
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
#: a page's live region is served at this prefix + the page's own path and query (ADR 0303)
LIVE_PREFIX = "/live"
#: the block of a page's template that is its live region
LIVE_BLOCK = "live"


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
        as_loaded = request.state.session.dump()
        page = not request.url.path.startswith(("/static/", "/assets/", "/health/"))
        if page:
            await keep_signed_in(console, request.state.session)
        response: Response = await call_next(request)
        if page:
            # a live region's poll writes the cookie only when it changed the session (a renewed
            # token, a sign-out): a poll answered after the person signed out or switched language
            # in another request would otherwise put the old session back, and a poll alone does
            # not extend the cookie's life
            if not is_live(request) or request.state.session.dump() != as_loaded:
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


def is_live(request: Request) -> bool:
    """A request for a page's live region (a poll of htmx), not for the page."""
    return request.url.path.startswith(LIVE_PREFIX + "/")


def live_page(router: APIRouter, path: str):
    """Serve a page at ``path`` and its live region at ``/live<path>`` with one handler: the same
    API calls and rules, and ``render`` answers the region's request with the template's ``live``
    block alone (ADR 0303)."""

    def register(endpoint):
        router.add_api_route(path, endpoint, methods=["GET"])
        router.add_api_route(LIVE_PREFIX + path, endpoint, methods=["GET"], name=f"{endpoint.__name__}_live",
                             include_in_schema=False)
        return endpoint

    return register


def page_path(request: Request) -> str:
    """The page a request belongs to, with its query: a live region's request names its page."""
    path = request.url.path.removeprefix(LIVE_PREFIX) if is_live(request) else request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path


def render(request: Request, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    """The page in the visitor's language; for a live region's request, the template's ``live``
    block alone (the block sees the context given here, not what the page sets outside it)."""
    c = console_of(request)
    s = session_of(request)
    lang = s.lang

    def tr(key: str, **kw: Any) -> str:
        return i18n.t(lang, key, **kw)

    nav = list(PUBLIC_NAV) if not s.signed_in or s.role == "resident" else []
    for href, key in NAV.get(s.role or "", []):
        if (href, key) not in nav:
            nav.append((href, key))
    live = is_live(request)
    context = {
        "t": tr, "lang": lang, "session": s, "csrf": s.csrf, "nav": nav, "path": request.url.path,
        "flashes": [] if live else s.take_flashes(),  # a poll leaves the next page's messages alone
        "local": lambda v: i18n.local_time(v, c.tz), "status_label": lambda st: i18n.status_label(lang, st),
        "duration": lambda sec: i18n.duration(lang, sec), "has_t": i18n.has, "zh": i18n.simplified,
        "tile_url": c.settings.tile_url, "live_every": c.settings.live_refresh_seconds,
        "live_url": LIVE_PREFIX + page_path(request), "updated_at": now().astimezone(c.tz), **ctx}
    if not live:
        return templates.TemplateResponse(request, template, status_code=status_code, context=context)
    page = templates.get_template(template)
    body = "".join(page.blocks[LIVE_BLOCK](page.new_context({"request": request, **context})))
    return HTMLResponse(body, status_code=status_code)


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


def sign_in_redirect(request: Request) -> Response:
    """To the sign-in page and back to this page after it. An htmx request (a live region's poll,
    the catalogue's search) is told to send the whole browser there (``HX-Redirect``), so that the
    sign-in page is never pasted into a list."""
    session_of(request).flash("error", i18n.t(session_of(request).lang, "error.signin_required"))
    where = f"/signin?next={quote(page_path(request))}"
    if request.headers.get("HX-Request"):
        return Response(status_code=401, headers={"HX-Redirect": where})
    return RedirectResponse(where, status_code=303)
