"""Intake's HTTP API: the native JSON API under /api/v1 and Open311 GeoReport v2 under /open311/v2.

Views are thin: they authenticate, translate, call a handler and shape the answer.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from civicgrid_contracts.calendar import CalendarYear
from civicgrid_intake.domain.catalogue import ServiceSpec
from civicgrid_intake.domain.commands import RateRequest, UnmergeRequest
from civicgrid_intake.domain.errors import IntakeError, StaleRevision
from civicgrid_intake.domain.imports import ImportBatch
from civicgrid_intake.domain.model import STATUSES
from civicgrid_intake.entrypoints import open311
from civicgrid_intake.entrypoints.limits import limit_reads, limit_submissions
from civicgrid_intake.entrypoints.schemas import (
    CalendarYearRead,
    CalendarYearWrite,
    ContactRead,
    ErasureDone,
    ImportDone,
    RequestCreate,
    RequestCreated,
    RequestPage,
    RequestRead,
    ServiceCreate,
    ServiceRead,
    to_read,
)
from civicgrid_intake.settings import IntakeSettings
from civicgrid_runtime.auth import Principal, authenticate, require, require_area
from civicgrid_runtime.problems import (
    PROBLEM_JSON,
    PROBLEM_SCHEMA,
    Problem,
    problem_response,
    validation_problem,
)
from civicgrid_runtime.protection import problem_413
from civicgrid_runtime.service import create_app

STAFF_READ = ("operator", "grid_worker", "supervisor", "department", "auditor")
_bearer = HTTPBearer(auto_error=False)


def handlers_of(request: Request):
    return request.app.state.service.handlers


def optional_principal(request: Request,
                       creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal | None:
    if creds is None:
        return None
    return authenticate(request, creds.credentials)


def resident_token(x_request_token: Annotated[str | None, Header(description="The token returned at submission")]
                   = None, token: Annotated[str | None, Query(description="Alternative to X-Request-Token")]
                   = None) -> str | None:
    return x_request_token or token


def _encode_cursor(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps([doc["received_at"].isoformat(), doc["_id"]]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        t, i = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(t), str(i)
    except Exception:  # noqa: BLE001
        raise Problem(422, "Invalid request", "cursor is not one this API returned", type_="validation-error",
                      errors=[{"field": "cursor", "in": "query", "message": "invalid cursor"}]) from None


# ----------------------------------------------------------------------------- native API

requests_router = APIRouter(prefix="/api/v1", tags=["requests"])


@requests_router.post("/requests", status_code=201, response_model=RequestCreated,
                      summary="Submit a request (resident, operator, app); 409: Idempotency-Key reused with "
                              "another body",
                      dependencies=[Depends(limit_submissions)])
async def submit(body: RequestCreate, request: Request,
                 idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> Response:
    h = handlers_of(request)
    res = await h.submit(body, idempotency_key=idempotency_key)
    headers = {"Location": f"/api/v1/requests/{res.request_id}"}
    if res.replayed:
        headers["Idempotent-Replayed"] = "true"
    # the model is built (it checks the answer) and serialised once: a returned model would be
    # validated and dumped again by FastAPI, on the busiest path of the service
    return Response(RequestCreated(**res.answer, token=res.token).model_dump_json(), status_code=201,
                    headers=headers, media_type="application/json")


@requests_router.get("/requests/{request_id}", response_model=RequestRead,
                     summary="One request and its status history (resident token or staff bearer token)",
                     dependencies=[Depends(limit_reads)])
async def read_one(request_id: str, request: Request, token: str | None = Depends(resident_token),
                   staff: Principal | None = Depends(optional_principal)) -> RequestRead:
    h = handlers_of(request)
    if staff is not None and staff.role != "resident":
        if staff.role not in (*STAFF_READ, "admin"):
            raise Problem(403, "Forbidden", f"Role {staff.role!r} may not read requests.", type_="forbidden")
        doc = await h.get(request_id)
        require_area(staff, doc.get("area_code"))  # every scoped role, not only grid workers
        return to_read(doc, parent_status=await h.parent_status(doc), staff=True)
    if not token:
        raise Problem(401, "Authentication required", "Send the request's token (X-Request-Token) or a staff "
                      "bearer token.", type_="unauthorized")
    doc = await h.get_for_resident(request_id, token)
    return to_read(doc, parent_status=await h.parent_status(doc))


@requests_router.get("/requests", response_model=RequestPage, summary="List and filter requests (staff)")
async def list_requests(
    request: Request,
    staff: Principal = Depends(require(*STAFF_READ)),
    status: Annotated[list[str] | None, Query(description=f"One or more of {', '.join(STATUSES)}")] = None,
    service_code: Annotated[list[str] | None, Query()] = None,
    area: Annotated[str | None, Query(max_length=20, description="Area code (district..grid)")] = None,
    received_from: datetime | None = None,
    received_to: datetime | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RequestPage:
    bad = [s for s in status or [] if s not in STATUSES]
    if bad:
        raise Problem(422, "Invalid request", f"unknown status {bad}", type_="validation-error",
                      errors=[{"field": "status", "in": "query", "message": f"one of {list(STATUSES)}"}])
    if area:
        require_area(staff, area)
    elif staff.area and staff.role != "admin":
        area = staff.area
    docs = await handlers_of(request).search(
        statuses=status, service_codes=service_code, area=area, start=received_from, end=received_to,
        after=_decode_cursor(cursor) if cursor else None, limit=limit + 1)
    more = len(docs) > limit
    docs = docs[:limit]
    return RequestPage(items=[to_read(d, staff=True) for d in docs],
                       next_cursor=_encode_cursor(docs[-1]) if more and docs else None)


@requests_router.post("/requests/{request_id}/rating", response_model=RequestRead,
                      summary="Rate a resolved request; 'unsatisfied' reopens it", dependencies=[Depends(limit_reads)])
async def rate(request_id: str, body: RateRequest, request: Request,
               token: str | None = Depends(resident_token),
               staff: Principal | None = Depends(optional_principal)) -> RequestRead:
    h = handlers_of(request)
    if staff is not None and staff.role in ("operator", "admin"):
        await h.get(request_id)  # an operator records a rating given on the phone
    else:
        await h.get_for_resident(request_id, token)
    return to_read(await h.rate(request_id, body))


@requests_router.post("/requests/{request_id}/erasure", response_model=ErasureDone,
                      summary="Erase the reporter's contact details; the request's history stays",
                      dependencies=[Depends(limit_reads)])
async def erase(request_id: str, request: Request, token: str | None = Depends(resident_token),
                staff: Principal | None = Depends(optional_principal)) -> ErasureDone:
    h = handlers_of(request)
    if staff is not None and staff.role in ("operator", "admin"):
        await h.get(request_id)
    else:
        await h.get_for_resident(request_id, token)
    return ErasureDone(**await h.erase_contact(request_id))


@requests_router.post("/requests/{request_id}/unmerge", response_model=RequestRead,
                      summary="Staff: this request is not a duplicate after all")
async def unmerge(request_id: str, body: UnmergeRequest, request: Request,
                  staff: Principal = Depends(require("operator", "grid_worker", "supervisor"))) -> RequestRead:
    h = handlers_of(request)
    require_area(staff, (await h.get(request_id)).get("area_code"))
    return to_read(await h.unmerge(request_id, staff, body.reason), staff=True)


@requests_router.get("/requests/{request_id}/contact", response_model=ContactRead,
                     summary="Staff: the reporter's contact details (every read, with its reason, goes to the audit trail)")
async def contact(request_id: str, request: Request,
                  reason: Annotated[str, Query(min_length=3, max_length=200,
                                               description="Why the details are needed (kept in the audit trail)")],
                  staff: Principal = Depends(require("operator", "grid_worker", "supervisor"))) -> ContactRead:
    return ContactRead(**await handlers_of(request).read_contact(request_id, staff, reason))


@requests_router.get("/requests/{request_id}/contact-access-log", summary="Who read this reporter's contact")
async def contact_log(request_id: str, request: Request,
                      staff: Principal = Depends(require("supervisor", "auditor"))) -> list[dict[str, Any]]:
    return await handlers_of(request).access_log(request_id)


# ----------------------------------------------------------------------------- catalogue

catalogue_router = APIRouter(prefix="/api/v1", tags=["catalogue"])


@catalogue_router.get("/services", response_model=list[ServiceRead], summary="The service catalogue")
async def services(request: Request, include_retired: bool = False) -> list[ServiceRead]:
    return [ServiceRead(**s.model_dump()) for s in
            request.app.state.service.catalogue.all(include_retired=include_retired)]


@catalogue_router.get("/services/{code}", response_model=ServiceRead,
                      summary="One service as stored now; its ETag names its revision (send it back as If-Match "
                              "to change it)",
                      description="Read from the store, not from this replica's copy of the catalogue (which "
                                  "follows other replicas' changes within seconds): an editor loads the revision a "
                                  "save is checked against.")
async def service(code: str, request: Request, response: Response) -> ServiceRead:
    s = await request.app.state.service.catalogue.current(code)
    response.headers["ETag"] = etag(s.revision)
    return ServiceRead(**s.model_dump())


ChangeReason = Annotated[str | None, Header(max_length=200, description="Why (kept in the audit trail)")]
IfMatch = Annotated[str | None, Header(
    max_length=40, description='The ETag of the version this change was made on, as GET returned it (`"7"`: '
    "revision 7). A newer revision stored answers 412 with the current one, nothing changed. Without it the "
    "change is saved over whatever is stored (ADR 0903).")]
#: the answer to a change made on an older revision than the one stored
STALE: dict[int | str, dict[str, Any]] = {412: {
    "description": "Changed since you read it: If-Match names an older revision (the current one in "
                   "`current_revision` and the ETag header); nothing was changed",
    "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}}
REVISION_CHECKED = ("Send the ETag your editor loaded as `If-Match`: if someone changed it since, the answer is 412 "
                    "(problem details naming `If-Match`, `current_revision`, and the current ETag) and nothing "
                    "changes. Without `If-Match` the change is saved over whatever is stored (ADR 0903). The "
                    "answer's ETag names the new revision.")


def etag(revision: int) -> str:
    """A document's ETag: its revision (a change always makes a new one)."""
    return f'"{revision}"'


def revision_in(if_match: str | None) -> int | None:
    """The revision an ``If-Match`` header names; None when there is none (or ``*``: whatever is stored)."""
    if if_match is None or if_match.strip() == "*":
        return None
    m = re.fullmatch(r'\s*(?:W/)?"(\d{1,9})"\s*', if_match)
    if m is None:
        raise Problem(422, "Invalid request", "If-Match must be one ETag as this API returned it", type_="validation-error",
                      errors=[{"field": "If-Match", "in": "header",
                               "message": f'expected one ETag such as "7" (a revision), got {if_match!r}'}])
    return int(m.group(1))


async def _audited(request: Request, response: Response, p: Principal, action: str, svc, reason: str | None,
                   expected: int | None) -> ServiceRead:
    await handlers_of(request).access.admin_changed(p, action, svc.code, reason=reason,
                                                    details={"revision": svc.revision, "active": svc.active,
                                                             "made_on_revision": expected})
    response.headers["ETag"] = etag(svc.revision)
    return ServiceRead(**svc.model_dump())


@catalogue_router.post("/services", response_model=ServiceRead, status_code=201, summary="Admin: add a service",
                       description="Each attribute (a question residents answer) is written in Chinese and English "
                                   "(`description_zh`, `description_en`, and each answer value's `name_zh`, "
                                   "`name_en`); a missing one is named in the 422.")
async def create_service(body: ServiceCreate, request: Request, response: Response,
                         p: Principal = Depends(require("admin")), x_change_reason: ChangeReason = None):
    spec = ServiceSpec(**body.model_dump(exclude={"code"}))
    svc = await request.app.state.service.catalogue.create(body.code, spec)
    return await _audited(request, response, p, "catalogue.create", svc, x_change_reason, None)


@catalogue_router.put("/services/{code}", response_model=ServiceRead, summary="Admin: change a service",
                      description="The whole service, each attribute in Chinese and English (as on POST). "
                                  + REVISION_CHECKED, responses=STALE)
async def update_service(code: str, body: ServiceSpec, request: Request, response: Response,
                         p: Principal = Depends(require("admin")), x_change_reason: ChangeReason = None,
                         if_match: IfMatch = None):
    expected = revision_in(if_match)
    svc = await request.app.state.service.catalogue.update(code, body, expected=expected)
    return await _audited(request, response, p, "catalogue.update", svc, x_change_reason, expected)


@catalogue_router.delete("/services/{code}", response_model=ServiceRead, summary="Admin: retire a service",
                         description=REVISION_CHECKED, responses=STALE)
async def retire_service(code: str, request: Request, response: Response, p: Principal = Depends(require("admin")),
                         x_change_reason: ChangeReason = None, if_match: IfMatch = None):
    expected = revision_in(if_match)
    svc = await request.app.state.service.catalogue.retire(code, expected=expected)
    return await _audited(request, response, p, "catalogue.retire", svc, x_change_reason, expected)


@catalogue_router.post("/services/{code}/reactivate", response_model=ServiceRead,
                       summary="Admin: offer a retired service again", description=REVISION_CHECKED,
                       responses=STALE)
async def reactivate_service(code: str, request: Request, response: Response,
                             p: Principal = Depends(require("admin")), x_change_reason: ChangeReason = None,
                             if_match: IfMatch = None):
    expected = revision_in(if_match)
    svc = await request.app.state.service.catalogue.reactivate(code, expected=expected)
    return await _audited(request, response, p, "catalogue.reactivate", svc, x_change_reason, expected)


# ----------------------------------------------------------------------------- working calendar

calendar_router = APIRouter(prefix="/api/v1", tags=["working calendar"])


def _calendar_read(follower, year: int) -> CalendarYearRead:
    held = follower.versions.get(year)
    if held is not None:
        return CalendarYearRead(calendar=held.calendar, revision=held.revision, changed_at=held.changed_at,
                                changed_by=held.changed_by)
    return CalendarYearRead(calendar=follower.calendar.year(year), revision=0,
                            derived=year not in follower.calendar.years)


@calendar_router.get("/calendar", response_model=list[CalendarYearRead],
                     summary="The working calendar: every year defined, with its revision")
async def calendar_years(request: Request) -> list[CalendarYearRead]:
    follower = request.app.state.runtime.calendar
    return [_calendar_read(follower, y) for y in sorted(set(follower.calendar.years) | set(follower.versions))]


@calendar_router.get("/calendar/{year}", response_model=CalendarYearRead,
                     summary="One year's working calendar (a year nobody defined: the nearest year's week); its "
                             "ETag names its revision (0: nobody defined it)")
async def calendar_year(request: Request, response: Response,
                        year: Annotated[int, Path(ge=2000, le=2200)]) -> CalendarYearRead:
    read = _calendar_read(request.app.state.runtime.calendar, year)
    response.headers["ETag"] = etag(read.revision)
    return read


@calendar_router.put("/calendar/{year}", response_model=CalendarYearRead,
                     summary="Admin: set a year's working calendar (a new revision; deadlines already set stay)",
                     description=REVISION_CHECKED + ' A year nobody defined yet is revision 0 (`If-Match: "0"`).',
                     responses=STALE)
async def set_calendar_year(request: Request, response: Response, year: Annotated[int, Path(ge=2000, le=2200)],
                            body: CalendarYearWrite, who: Principal = Depends(require("admin")),
                            x_change_reason: ChangeReason = None, if_match: IfMatch = None) -> CalendarYearRead:
    expected = revision_in(if_match)
    cal = CalendarYear(year=year, **body.model_dump())  # the body passed the same field rules
    defined = await request.app.state.service.calendar_years.set_year(cal, by=who.sub, expected=expected)
    await handlers_of(request).access.admin_changed(who, "calendar.define", str(year), reason=x_change_reason,
                                                    details={"revision": defined.revision,
                                                             "made_on_revision": expected})
    response.headers["ETag"] = etag(defined.revision)
    return CalendarYearRead(calendar=defined.calendar, revision=defined.revision, changed_at=defined.changed_at,
                            changed_by=defined.changed_by)


# ----------------------------------------------------------------------------- import of open cases

imports_router = APIRouter(prefix="/api/v1", tags=["import"])


@imports_router.post(
    "/imports/requests", response_model=ImportDone,
    summary="Admin: import open cases from the system the city replaces, with their original received time",
    description="Up to 100 cases a call. Each keeps its `received_at` (in the past, within "
                "`INTAKE_IMPORT_WINDOW_DAYS`): its deadlines count from it, so a case already late is escalated "
                "as usual. The legacy `external_ref` makes the import idempotent: the same case again answers "
                "`already_imported`, the same reference with other content is a 409. Every item is checked first; "
                "while one has a defect (422, each naming `items/<n>/<field>`) nothing is imported. Recorded in the "
                "staff access trail as `requests:<batch_id>` (reason in `X-Change-Reason`).")
async def import_requests(body: ImportBatch, request: Request, p: Principal = Depends(require("admin")),
                          x_change_reason: ChangeReason = None) -> ImportDone:
    return ImportDone(**await handlers_of(request).import_requests(body, p, reason=x_change_reason))


# ----------------------------------------------------------------------------- app


def oversize(scope, limit: int) -> Response:
    """413 for a body over the limit: Open311's error list on its paths, problem details elsewhere."""
    path = scope.get("path", "")
    if path.startswith("/open311/"):
        return open311.error_response(413, f"Request body larger than {limit} bytes", open311.fmt_of(path))
    return problem_413(scope, limit)


def stale_revision(exc: IntakeError) -> dict[str, Any]:
    """What a 412 adds to its problem details: the current revision, and its ETag to read it again."""
    if not isinstance(exc, StaleRevision):
        return {}
    return {"current_revision": exc.current_revision, "headers": {"ETag": etag(exc.current_revision)}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(IntakeError)
    async def _intake_error(request: Request, exc: IntakeError):
        if request.url.path.startswith("/open311/"):
            return open311.error_response(exc.status if exc.status in (403, 404) else 400, exc.detail,
                                          open311.fmt_of(request.url.path))
        errors = [{"field": e["field"], "in": e.get("in", "body"), "message": e["message"]} for e in exc.errors or []]
        return problem_response(Problem(exc.status, exc.title, exc.detail, type_=type(exc).__name__.lower(),
                                        errors=errors or None, **stale_revision(exc)), request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errs = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errs):
            return problem_response(Problem(400, "Malformed body", "The request body is not valid JSON.",
                                            type_="malformed-body"), request)
        return problem_response(validation_problem(errs), request)

    @app.exception_handler(open311.Open311Error)
    async def _open311(request: Request, exc: open311.Open311Error):
        return open311.error_response(exc.status, exc.description, exc.fmt)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        """Open311 clients read Open311's error list on its paths (a rate limit's 429 among them)."""
        if request.url.path.startswith("/open311/"):
            return open311.error_response(exc.status, exc.detail or exc.title, open311.fmt_of(request.url.path),
                                          headers=exc.headers)
        return problem_response(exc, request)


def build_app(settings: IntakeSettings | None = None, *, consume: bool = True) -> FastAPI:
    from civicgrid_intake.bootstrap import bootstrap

    settings = settings or IntakeSettings()

    async def factory():
        return await bootstrap(settings, consume=consume)

    async def on_started(service):
        await service.start()

    app = create_app(title="civicgrid intake",
                     version="1.0.0",
                     description="Residents' requests (the demand list), the service catalogue, and Open311 "
                                 "GeoReport v2. Errors are RFC 9457 problem details (Open311: its error list).",
                     runtime_factory=factory, on_started=on_started, settings=settings,
                     oversize_response=oversize)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: FastAPI):
        async with inner(a):
            try:
                yield
            finally:
                await a.state.service.stop()  # the duplicate feed, then the runtime

    app.router.lifespan_context = lifespan
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(requests_router)
    app.include_router(catalogue_router)
    app.include_router(calendar_router)
    app.include_router(imports_router)
    app.include_router(open311.router)
    return app
