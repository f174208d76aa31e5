"""RFC 9457 problem details for every error a civicgrid API returns.

Validation errors name the failing field (``errors[].field``, a JSON-pointer-like path); nothing
ever leaks as a bare 500 with a stack trace.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from civicgrid_runtime.logging import get_logger

PROBLEM_JSON = "application/problem+json"
log = get_logger("civicgrid.http")

#: the OpenAPI schema of a problem-details body (inline: a component would need a pydantic model)
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["type", "title", "status"], "additionalProperties": True,
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "additionalProperties": True, "properties": {
            "field": {"type": "string"}, "in": {"type": "string"}, "message": {"type": "string"}}}},
    },
}
PROBLEM_STATUSES = {400: "Malformed request", 401: "No valid bearer token", 403: "Not allowed for this role or area",
                    404: "Not found", 405: "Method not allowed", 409: "Conflicts with the current state",
                    413: "Body too large", 415: "Unsupported media type", 422: "Invalid field (named in errors[])",
                    429: "Too many requests (see Retry-After)", 500: "Unexpected error (logged)",
                    503: "Store or broker unavailable, retry (see Retry-After)"}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting problem-details answers (every status when none named)."""
    return {s: {"description": PROBLEM_STATUSES[s], "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}
            for s in statuses or PROBLEM_STATUSES}


class Problem(Exception):
    """Raise to answer with a problem-details body."""

    def __init__(self, status: int, title: str, detail: str = "", *, type_: str = "about:blank",
                 errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.type = status, title, detail, type_
        self.errors, self.headers, self.extra = errors, headers, extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        b: dict[str, Any] = {
            "type": self.type if self.type.startswith(("about:", "http", "urn:", "/")) else f"/problems/{self.type}",
            "title": self.title, "status": self.status,
        }
        if self.detail:
            b["detail"] = self.detail
        if instance:
            b["instance"] = instance
        if self.errors:
            b["errors"] = self.errors
        b.update(self.extra)
        return b


def field_path(loc: tuple | list) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return "/".join(parts) or "/".join(str(p) for p in loc)


def validation_problem(errors: list[dict[str, Any]]) -> Problem:
    items = [
        {"field": field_path(e.get("loc", ())), "in": (e.get("loc") or ["body"])[0], "message": e.get("msg", ""),
         "type": e.get("type", "")}
        for e in errors
    ]
    fields = ", ".join(sorted({i["field"] for i in items}))
    return Problem(422, "Invalid request", f"Invalid value for: {fields}", type_="validation-error", errors=items)


def problem_response(p: Problem, request: Request | None = None) -> JSONResponse:
    return JSONResponse(p.body(str(request.url.path) if request else None), status_code=p.status,
                        media_type=PROBLEM_JSON, headers=p.headers)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return problem_response(validation_problem(list(exc.errors())), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        titles = {404: "Not found", 405: "Method not allowed", 413: "Payload too large", 415: "Unsupported media type"}
        return problem_response(Problem(exc.status_code, titles.get(exc.status_code, "HTTP error"), str(exc.detail),
                                        headers=getattr(exc, "headers", None)), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.error("unhandled error", path=request.url.path, error=repr(exc), exc_info=exc)
        return problem_response(Problem(503 if _is_infrastructure(exc) else 500,
                                        "Service unavailable" if _is_infrastructure(exc) else "Internal error",
                                        "Please retry later." if _is_infrastructure(exc) else "An unexpected error "
                                        "occurred; it has been logged.", headers={"Retry-After": "1"}
                                        if _is_infrastructure(exc) else None), request)


def _is_infrastructure(exc: Exception) -> bool:
    from civicgrid_runtime.bus import is_transient

    return is_transient(exc)
