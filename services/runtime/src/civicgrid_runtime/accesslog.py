"""One log line per HTTP request, and a request id that ties every line of that request together.

The id is the caller's ``X-Request-ID`` when it is a plausible one (a proxy or the console sets it),
else a new one; it is bound to every log line written while the request is handled
(``http_request_id``, beside the trace and span ids the tracing processor adds) and sent back in
the response's ``X-Request-ID``. The line itself names the method, the route's template (not the
raw path: no request ids or tokens in the log), the status and the time taken; probes of
``/health/`` and ``/metrics`` are not logged. No client address is logged (personal data).
"""

from __future__ import annotations

import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import get_contextvars

from civicgrid_runtime.logging import bound_contextvars, get_logger

log = get_logger("civicgrid.http")
HEADER = b"x-request-id"
_PLAUSIBLE = re.compile(rb"^[A-Za-z0-9._:-]{8,64}$")
QUIET_PREFIXES = ("/health/", "/metrics")


def request_id(scope: Scope) -> str:
    """The caller's request id when it is plausible, else a new one."""
    given = dict(scope.get("headers") or []).get(HEADER)
    return given.decode() if given and _PLAUSIBLE.match(given) else uuid.uuid4().hex


def current_request_id() -> str | None:
    """The id of the HTTP request being handled, to send on with the calls it makes."""
    return get_contextvars().get("http_request_id")


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/requests/{rid}``), or ``unmatched``."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class AccessLog:
    """Pure ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = request_id(scope)
        status = 500  # what the server answers when the app fails before it starts a response
        started = time.perf_counter()

        async def send_with_id(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
                msg = {**msg, "headers": [*(msg.get("headers") or []), (HEADER, rid.encode())]}
            await send(msg)

        with bound_contextvars(http_request_id=rid):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                if not scope["path"].startswith(QUIET_PREFIXES):
                    write = log.error if status >= 500 else log.info
                    write("http request", method=scope["method"], route=route_template(scope), status=status,
                          duration_ms=round((time.perf_counter() - started) * 1000, 1))
