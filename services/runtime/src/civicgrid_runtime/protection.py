"""What every service's HTTP side wears against abuse, installed once by ``create_app``:
a request-body cap before any parsing (413), CORS for the console's origin only, security headers
on every response, and the API docs served from this process (no CDN) under a CSP that lets them
work (docs/adr/0401-http-protection-and-rate-limits.md).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request as StarletteRequest
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from civicgrid_runtime.problems import Problem, problem_response

DOCS_STATIC = "/docs/static"
#: an API answer is never a page: it may load nothing and be framed by no one
API_CSP = "default-src 'none'; frame-ancestors 'none'"
HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
}
HSTS = b"max-age=31536000; includeSubDomains"

#: builds the 413 answer for a refused body (a service may answer in its own format, e.g. Open311's)
OversizeResponse = Callable[[Scope, int], Response]


def problem_413(scope: Scope, limit: int) -> Response:
    return problem_response(Problem(413, "Payload too large", f"The request body is larger than {limit} bytes.",
                                    type_="payload-too-large"), StarletteRequest(scope))


class BodyLimit:
    """Pure ASGI middleware: a body over ``limit`` bytes is refused with 413 before anything reads
    it -- at once when Content-Length says so, else while it streams in (chunked uploads)."""

    def __init__(self, app: ASGIApp, limit: int, respond: OversizeResponse = problem_413) -> None:
        self.app, self.limit, self.respond = app, limit, respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.limit:
                return await self.respond(scope, self.limit)(scope, receive, send)
            return await self.app(scope, receive, send)  # the server never passes more than declared
        chunks, size = [], 0  # chunked: read up to the limit, then replay
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            size += len(msg.get("body", b""))
            if size > self.limit:
                return await self.respond(scope, self.limit)(scope, receive, send)
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


class SecurityHeaders:
    """Pure ASGI middleware: nosniff, no referrer, no framing and a deny-all CSP on every response
    that did not bring its own CSP (the docs page does); HSTS when the request came over TLS (the
    scheme a trusted proxy forwarded, see uvicorn's ``forwarded_allow_ips``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        tls = scope.get("scheme") == "https"

        async def send_with_headers(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                headers = list(msg.get("headers") or [])
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in HEADERS.items() if k not in present]
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", API_CSP.encode()))
                if tls:
                    headers.append((b"strict-transport-security", HSTS))
                msg = {**msg, "headers": headers}
            await send(msg)

        await self.app(scope, receive, send_with_headers)


def _script_hashes(html: str) -> str:
    inline = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline)


def install_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the files a pinned package ships, under a CSP naming the page's
    one inline script by its hash (no 'unsafe-inline' scripts, nothing from another origin)."""
    app.mount(DOCS_STATIC, StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static"),
              name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        html = get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - API",
                                   swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon.png").body.decode()
        csp = (f"default-src 'none'; script-src 'self' {_script_hashes(html)}; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
        return HTMLResponse(html, headers={"Content-Security-Policy": csp})


def install_protection(app: FastAPI, *, max_body_bytes: int, console_origin: str,
                       oversize_response: OversizeResponse = problem_413) -> None:
    # added last = outermost: the headers go on every answer, the CORS and 413 ones included
    app.add_middleware(BodyLimit, limit=max_body_bytes, respond=oversize_response)
    app.add_middleware(CORSMiddleware, allow_origins=[console_origin], allow_credentials=False,
                       allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                       allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Token",
                                      "X-Request-ID"],
                       expose_headers=["Location", "Retry-After", "Idempotent-Replayed", "X-Request-ID"], max_age=600)
    app.add_middleware(SecurityHeaders)
