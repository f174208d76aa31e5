"""The console's web app: pages by role, the assets it serves itself, health, and every failure
rendered as a page in the visitor's language (never a stack trace or raw JSON)."""

from __future__ import annotations

import contextlib
from html import escape

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from civicgrid_console.adapters.api import ApiError
from civicgrid_console.bootstrap import PACKAGE, bootstrap
from civicgrid_console.domain import i18n
from civicgrid_console.entrypoints import web
from civicgrid_console.entrypoints.pages import (
    admin,
    auditor,
    common,
    resident,
    roster,
    staff,
    supervisor,
    volunteer,
)
from civicgrid_console.settings import ConsoleSettings
from civicgrid_runtime.accesslog import AccessLog
from civicgrid_runtime.logging import get_logger

log = get_logger("civicgrid.console")

#: the npm packages' files the pages load, under /assets/<name>/
ASSETS = {"htmx": "htmx.org/dist", "leaflet": "leaflet/dist", "echarts": "echarts/dist"}


def build_app(settings: ConsoleSettings | None = None) -> FastAPI:
    console = bootstrap(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await console.close()

    app = FastAPI(title="civicgrid console", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.console = console
    web.install(app, console)
    app.mount("/static", StaticFiles(directory=PACKAGE / "static"), name="static")
    for name, sub in ASSETS.items():
        path = console.settings.assets_dir / sub
        if path.is_dir():
            app.mount(f"/assets/{name}", StaticFiles(directory=path), name=f"assets-{name}")
        else:
            log.warning("front-end assets missing: run make setup (npm ci)", missing=str(path))
    for module in (common, resident, staff, volunteer, supervisor, auditor, admin, roster):
        app.include_router(module.router, dependencies=[Depends(web.csrf_protect)])
    install_error_pages(app)
    app.add_middleware(AccessLog)  # one line per page, and a request id on every line of it

    @app.get("/health/live", include_in_schema=False)
    async def live():
        return {"status": "ok"}

    @app.get("/health/ready", include_in_schema=False)
    async def ready():
        reachable = {api.name: await api.ping() for api in console.apis.all()}
        assets = all((console.settings.assets_dir / sub).is_dir() for sub in ASSETS.values())
        ok = assets and all(reachable.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "services": reachable, "assets": assets},
                            status_code=200 if ok else 503)

    return app


def install_error_pages(app: FastAPI) -> None:
    def page(request: Request, status: int, message: str, key: str = ""):
        if not hasattr(request.state, "session"):  # failed before the session middleware ran
            return JSONResponse({"title": message}, status_code=status)
        if web.is_live(request):  # htmx swaps no error in: the region keeps what it showed, and says it failed
            return HTMLResponse(f'<p class="flash error" role="alert">{escape(message)}</p>', status_code=status)
        return web.render(request, "error.html", status, message=message, status=status,
                          sign_in_again=key.startswith("signin."))

    @app.exception_handler(web.PageProblem)
    async def _page_problem(request: Request, exc: web.PageProblem):
        return page(request, exc.status, i18n.t(web.session_of(request).lang, exc.key, **exc.kw), exc.key)

    @app.exception_handler(web.NeedsSignIn)
    async def _needs_sign_in(request: Request, exc: web.NeedsSignIn):
        return web.sign_in_redirect(request)

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError):
        log.warning("api problem", path=request.url.path, service=exc.service, status=exc.status, title=exc.title,
                    detail=exc.detail)
        s = web.session_of(request)
        if exc.status == 401 and s.signed_in:  # the token expired: sign in again
            s.sign_out()
            return web.sign_in_redirect(request)
        status = exc.status if 400 <= exc.status < 500 or exc.status == 503 else 502
        return page(request, status, web.api_message(s.lang, exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        lang = web.session_of(request).lang
        fields = "; ".join(".".join(str(p) for p in e.get("loc", ())[1:]) or "?" for e in exc.errors())
        return page(request, 422, f"{i18n.t(lang, 'error.invalid_form')} ({fields})")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        lang = web.session_of(request).lang if hasattr(request.state, "session") else "zh"
        key = "error.not_found" if exc.status_code == 404 else f"error.status.{exc.status_code}"
        return page(request, exc.status_code, i18n.t(lang, key) if i18n.has(key) else i18n.t(lang, "error.title"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.error("page failed", path=request.url.path, error=repr(exc), exc_info=exc)
        lang = web.session_of(request).lang if hasattr(request.state, "session") else "zh"
        return page(request, 500, i18n.t(lang, "error.unexpected"))
