"""HTTP API of the grid service: the map (public reads, admin import), staff work queues and the
actions on a request. Views are thin: they check the caller and call ``Commands``; the domain's
refusals (``domain.errors``) become problem details in ``GridRoute``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Query, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from civicgrid_grid.bootstrap import GridService, bootstrap
from civicgrid_grid.domain.errors import (
    ChangedMeanwhile,
    GridError,
    InvalidValue,
    NotAllowed,
    NotFound,
    UnknownReference,
)
from civicgrid_grid.domain.geojson import to_geojson
from civicgrid_grid.domain.request import RequestCase
from civicgrid_grid.domain.roster import PostView, StaffMember
from civicgrid_grid.domain.validation import MapRejected, parse_and_validate
from civicgrid_grid.settings import GridSettings
from civicgrid_runtime import Problem, create_app
from civicgrid_runtime.auth import Principal, require, require_area

STAFF_ROLES = ("grid_worker", "supervisor")


# ------------------------------------------------------------------------------------ API schemas
class MapInfo(BaseModel):
    version: int
    counts: dict[str, int]
    extent: list[float] = Field(min_length=4, max_length=4, description="[min lon, min lat, max lon, max lat]")


class Located(BaseModel):
    method: str
    located: bool
    district: str | None = None
    street: str | None = None
    community: str | None = None
    grid: str | None = None
    building: str | None = None
    reason: str = ""
    map_version: int


class QueueItem(BaseModel):
    request_id: str
    status: str
    priority: str | None = None
    service_code: str | None = None
    due_response: datetime | None = None
    due_resolution: datetime | None = None
    grid: str | None = None
    holder: str | None = None
    reason: str | None = None
    attention: list[str] = []


class RequestRead(QueueItem):
    assignee_id: str | None = None
    level: str | None = None
    post_id: str | None = None
    map_version: int | None = None
    area: dict[str, Any] = {}
    handled_by: list[str] = []
    dispatches: dict[str, Any] = {}
    notes: list[dict[str, Any]] = []
    transfers: list[dict[str, Any]] = []
    escalations: list[str] = []


class NoteCreate(BaseModel):
    note: str = Field(min_length=1, max_length=2000)


class VolunteerAsk(BaseModel):
    needed_from: datetime | None = None
    needed_hours: float = Field(default=1.0, gt=0, le=24)
    recurring_weekly: bool = False


class WhistleCreate(BaseModel):
    departments: list[str] = Field(min_length=1)
    reason: str = Field(min_length=1, max_length=1000)
    report_back_hours: float | None = Field(default=None, gt=0)


class TransferCreate(BaseModel):
    to_grid: str = Field(pattern=r"^\d{15}$")
    reason: str = Field(min_length=1, max_length=1000)


class ResolveCreate(BaseModel):
    resolution_note: str = Field(min_length=1, max_length=2000)


class RejectCreate(BaseModel):
    reason: str = Field(min_length=1, max_length=1000)


class ReassignCreate(BaseModel):
    to_staff: str = Field(min_length=1)
    reason: str = Field(min_length=1, max_length=1000)


class ReportCreate(BaseModel):
    outcome: str = Field(min_length=1, max_length=2000)


AREA_CODE = r"^\d{6}(\d{3}){0,3}$"
STAFF_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
Line = Literal["general", "care"]


class DutyUpdate(BaseModel):
    duty: Literal["on", "off", "leave"]
    leave_until: date | None = Field(default=None, description="duty leave: its last day (the district's)")
    away_until: datetime | None = Field(default=None, description="duty off: back at this moment (else until "
                                                                   "set on duty again)")
    limit: int | None = Field(default=None, ge=1, le=100000)
    version: int | None = Field(default=None, ge=0, description="the version read: refused (409) if it changed")


class OwnDutyUpdate(BaseModel):
    """What a staff member sets for themselves: on duty, or away (leave is granted by a supervisor)."""

    duty: Literal["on", "off"]
    away_until: datetime | None = None
    version: int | None = Field(default=None, ge=0)


class StaffRead(BaseModel):
    id: str
    name: str | None = None
    role: str | None = None
    area: str | None = None
    level: str | None = None
    lines: list[str] = []
    active: bool = True
    duty: str
    leave_until: str | None = None
    away_until: datetime | None = None
    load: int
    limit: int
    version: int = 0
    unavailable: str | None = Field(default=None, description="why they get no new requests now (duty), if so")


class StaffCreate(BaseModel):
    id: str = Field(pattern=STAFF_ID, description="the staff member's sign-in subject")
    name: str = Field(min_length=1, max_length=100)
    role: Literal["grid_worker", "supervisor"]
    area: str = Field(pattern=AREA_CODE)
    lines: list[Line] = Field(default_factory=lambda: ["general", "care"], max_length=2)
    limit: int = Field(default=20, ge=1, le=100000)


class StaffUpdate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["grid_worker", "supervisor"]
    area: str = Field(pattern=AREA_CODE)
    lines: list[Line] = Field(max_length=2)
    limit: int = Field(ge=1, le=100000)
    active: bool = True
    version: int = Field(ge=0, description="the version read: refused (409) if it changed")


class PostUpdate(BaseModel):
    a: str = Field(min_length=1, max_length=64, description="A, the primary holder (a post always has one)")
    b: str | None = Field(default=None, min_length=1, max_length=64, description="B, the trained backup (null: vacant)")
    version: int = Field(ge=0, description="the version read: refused (409) if it changed")


class PostRead(BaseModel):
    id: str
    area: str
    line: str
    level: str
    version: int
    a: StaffRead | None = None
    b: StaffRead | None = None
    a_id: str
    b_id: str | None = None
    serving: Literal["A", "B", "chain"] = Field(description="who takes the post's next request now")
    reason: str = Field(default="", description="why not A (empty when A serves)")
    as_holder: Literal["A", "B"] | None = Field(default=None, description="the staff member's own place (their posts)")


class PostList(BaseModel):
    area: str
    posts: list[PostRead]


class AreaList(BaseModel):
    map_version: int
    within: str
    kind: str
    areas: list[dict[str, str]]


# ------------------------------------------------------------------------------------ helpers
def svc_of(request: Request) -> GridService:
    return request.app.state.service


def request_read(case: RequestCase) -> RequestRead:
    return RequestRead(request_id=case.id, status=case.status, priority=case.priority, service_code=case.service_code,
                       due_response=case.due_response, due_resolution=case.due_resolution,
                       grid=case.area.get("grid"), holder=case.holder, reason=case.reason, attention=case.attention,
                       assignee_id=case.assignee_id, level=case.level, post_id=case.post_id,
                       map_version=case.map_version, area=case.area, handled_by=case.handled_by,
                       dispatches={k: vars(d) for k, d in case.dispatches.items()}, notes=case.notes,
                       transfers=case.transfers, escalations=case.escalations)


def problem_of(exc: GridError) -> Problem:
    """The one translation of the domain's refusals to HTTP."""
    if isinstance(exc, UnknownReference):
        return Problem(422, f"Unknown {exc.what}", exc.message, type_="validation-error",
                       errors=[{"field": exc.field, "message": f"unknown {v}"} for v in exc.values])
    if isinstance(exc, InvalidValue):
        return Problem(422, "Invalid value", exc.message, type_="validation-error",
                       errors=[{"field": exc.field, "in": "body", "message": exc.reason}])
    if isinstance(exc, NotFound):
        return Problem(404, "Not found", exc.message)
    if isinstance(exc, NotAllowed | ChangedMeanwhile):
        return Problem(409, "Conflict", exc.message, type_="conflict")
    return Problem(400, "Refused", exc.message)


class GridRoute(APIRoute):
    """Routes whose domain errors answer as problem details."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def translated(request):
            try:
                return await handler(request)
            except GridError as exc:
                raise problem_of(exc) from None

        return translated


def area_code(case: RequestCase) -> str | None:
    return case.area.get("grid") or case.area.get("community") or case.area.get("street")


async def scoped(request: Request, rid: str, p: Principal) -> RequestCase:
    case = await svc_of(request).commands.load(rid)
    if p.role == "department":
        if p.sub not in case.dispatched_to:
            raise Problem(403, "Not dispatched to you", f"Request {rid} was not dispatched to {p.sub}.",
                          type_="forbidden")
        return case
    if p.role == "grid_worker" and case.assignee_id == p.sub:
        return case
    require_area(p, area_code(case))
    return case


def city_or_503(svc: GridService):
    if svc.ctx.city is None:
        raise Problem(503, "No map loaded", "No map version is active yet; import one.", headers={"Retry-After": "5"})
    return svc.ctx.city


# ------------------------------------------------------------------------------------ routers
ChangeReason = Annotated[str | None, Header(max_length=200, description="Why (kept in the audit trail)")]


def said(reason: str | None) -> str | None:
    """The header's reason as the client wrote it: UTF-8 (a reason in Chinese), which HTTP hands
    over byte for byte as Latin-1."""
    if reason is None:
        return None
    try:
        return reason.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return reason

map_router = APIRouter(prefix="/v1/map", tags=["map"], route_class=GridRoute)


@map_router.get("", response_model=MapInfo, summary="The current map version, its size and extent")
async def map_info(request: Request) -> MapInfo:
    city = city_or_503(svc_of(request))
    return MapInfo(version=city.version, counts=city.counts(), extent=list(city.extent()))


@map_router.get("/locate", response_model=Located, summary="Locate a point, building id or address text")
async def locate(request: Request, lat: float | None = Query(None, ge=-90, le=90),
                 lon: float | None = Query(None, ge=-180, le=180), building_id: str | None = None,
                 address: str | None = Query(None, max_length=500)) -> Located:
    city = city_or_503(svc_of(request))
    loc = city.locate(lat=lat, lon=lon, building_id=building_id, address_text=address)
    return Located(method=loc.method, located=loc.located, district=loc.district, street=loc.street,
                   community=loc.community, grid=loc.grid, building=loc.building, reason=loc.reason,
                   map_version=city.version)


@map_router.get("/buildings", summary="Buildings under an area code (a seeded sample when seed is given)")
async def buildings(request: Request, area: str = Query("", pattern=r"^\d*$", max_length=18), limit: int = Query(100, ge=1, le=10000),
                    seed: int | None = Query(None, ge=0, le=2**63 - 1)) -> dict[str, Any]:
    city = city_or_503(svc_of(request))
    return {"map_version": city.version, "buildings": city.buildings_of(area, limit=limit, seed=seed)}


@map_router.get("/grids", summary="Grids under an area code with their bounding boxes")
async def grids(request: Request, area: str = Query("", pattern=r"^\d*$", max_length=18), limit: int = Query(1000, ge=1, le=50000)):
    city = city_or_503(svc_of(request))
    out = []
    for code, name in zip(city.grids.codes, city.grids.names, strict=True):
        if code.startswith(area):
            out.append({"grid": code, "name": name, "bbox": city.grid_bbox(code),
                        "property_company": city.property_company(code[:12])})
            if len(out) >= limit:
                break
    return {"map_version": city.version, "grids": out}


@map_router.get("/areas", response_model=AreaList, summary="The areas one level below an area code (pickers)")
async def areas(request: Request, within: str = Query("", pattern=r"^(\d{6}(\d{3}){0,2})?$")) -> AreaList:
    city = city_or_503(svc_of(request))
    kind = {0: "district", 6: "street", 9: "community", 12: "grid"}[len(within)]
    layer = city.layer(kind)
    found = [{"code": c, "name": n} for c, parent, n in zip(layer.codes, layer.parents, layer.names, strict=True)
             if not within or parent == within]
    return AreaList(map_version=city.version, within=within, kind=kind, areas=found)


@map_router.get("/export", summary="GeoJSON (RFC 7946) of the current map or the part under an area code")
async def export(request: Request, area: str = Query("", pattern=r"^\d*$", max_length=18), buildings: bool = True) -> dict:
    city = city_or_503(svc_of(request))
    if not area and buildings and len(city.bld_codes) > 200_000:
        raise Problem(413, "Map too large", "Export the whole megacity with the CLI, or name an area.")
    return to_geojson(city, include_buildings=buildings, prefix=area)


@map_router.post("/import", status_code=201, summary="Import a GeoJSON map as a new version (validated as a whole)")
async def import_map(request: Request, fc: dict = Body(...), activate: bool = True,
                     p: Principal = Depends(require("admin")), x_change_reason: ChangeReason = None) -> dict[str, Any]:
    svc = svc_of(request)
    try:
        city = parse_and_validate(fc)
    except MapRejected as exc:
        raise Problem(422, "Map rejected", f"{len(exc.defects)} defects; nothing was changed.",
                      type_="map-rejected", errors=[d.as_dict() for d in exc.defects]) from None
    version = await svc.maps.save(city, activate=activate, source=f"http by {p.sub}")
    await svc.access.admin_changed(p, "map.import", str(version), reason=x_change_reason,
                                   details={"activated": activate, **city.counts()})
    if activate:
        await svc.refresh_map()
    return {"version": version, "counts": city.counts(), "active": activate}


@map_router.get("/versions", summary="Stored map versions")
async def versions(request: Request, p: Principal = Depends(require("admin", "supervisor"))) -> dict[str, Any]:
    svc = svc_of(request)
    return {"current": await svc.maps.current_version(),
            "versions": [{"version": v["_id"], "counts": v.get("counts"), "source": v.get("source"),
                          "created_at": v.get("created_at")} for v in await svc.maps.list_versions()]}


@map_router.post("/versions/{version}/activate", summary="Switch the current map version")
async def activate(request: Request, version: int, p: Principal = Depends(require("admin")),
                   x_change_reason: ChangeReason = None) -> dict[str, Any]:
    svc = svc_of(request)
    try:
        await svc.maps.activate(version)
    except KeyError:
        raise Problem(404, "Unknown map version", f"No complete map version {version}.") from None
    await svc.access.admin_changed(p, "map.activate", str(version), reason=x_change_reason)
    await svc.refresh_map()
    return {"current": version}


work_router = APIRouter(prefix="/v1", tags=["work"], route_class=GridRoute)


@work_router.get("/queue", response_model=list[QueueItem], summary="My queue, by priority and deadline")
async def my_queue(request: Request, p: Principal = Depends(require(*STAFF_ROLES, "department"))) -> list[QueueItem]:
    return await _queue(request, p.sub, department=p.role == "department")


@work_router.get("/queues/{staff_id}", response_model=list[QueueItem], summary="Someone's queue (supervisors)")
async def staff_queue(request: Request, staff_id: str,
                      p: Principal = Depends(require("supervisor"))) -> list[QueueItem]:
    if staff_id.startswith("unlocated:"):
        require_area(p, staff_id.removeprefix("unlocated:"))
    else:
        s = await svc_of(request).ctx.staff.get(staff_id)
        if s is None:
            raise Problem(404, "Unknown staff member", f"No staff member {staff_id}.")
        require_area(p, s.get("area"))
    return await _queue(request, staff_id)


async def _queue(request: Request, who: str, *, department: bool = False) -> list[QueueItem]:
    requests = svc_of(request).ctx.requests
    cases = await (requests.open_dispatched_to(who) if department else requests.open_held_by(who))
    return [QueueItem(**request_read(c).model_dump(include=set(QueueItem.model_fields))) for c in cases]


@work_router.get("/requests/{rid}", response_model=RequestRead)
async def get_request(request: Request, rid: str,
                      p: Principal = Depends(require(*STAFF_ROLES, "department", "auditor"))) -> RequestRead:
    return request_read(await scoped(request, rid, p))


@work_router.post("/requests/{rid}/accept", response_model=RequestRead, summary="Accept (the response)")
async def accept(request: Request, rid: str, p: Principal = Depends(require(*STAFF_ROLES))) -> RequestRead:
    doc = await scoped(request, rid, p)
    return request_read(await svc_of(request).commands.accept(doc, p.sub))


@work_router.post("/requests/{rid}/notes", response_model=RequestRead)
async def note(request: Request, rid: str, body: NoteCreate,
               p: Principal = Depends(require(*STAFF_ROLES))) -> RequestRead:
    doc = await scoped(request, rid, p)
    return request_read(await svc_of(request).commands.note(doc, p.sub, body.note))


@work_router.post("/requests/{rid}/volunteers", response_model=RequestRead, summary="Ask for volunteers")
async def ask_volunteers(request: Request, rid: str, body: VolunteerAsk,
                         p: Principal = Depends(require(*STAFF_ROLES))) -> RequestRead:
    doc = await scoped(request, rid, p)
    return request_read(await svc_of(request).commands.ask_volunteers(doc, p.sub, body.needed_from,
                                                                       body.needed_hours, body.recurring_weekly))


@work_router.post("/requests/{rid}/whistle", response_model=RequestRead, summary="Dispatch to departments")
async def whistle(request: Request, rid: str, body: WhistleCreate,
                  p: Principal = Depends(require(*STAFF_ROLES))) -> RequestRead:
    doc = await scoped(request, rid, p)
    return request_read(await svc_of(request).commands.whistle(doc, p.sub, body.departments, body.reason,
                                                                body.report_back_hours))


@work_router.post("/requests/{rid}/transfer", response_model=RequestRead, summary="Transfer to another grid")
async def transfer(request: Request, rid: str, body: TransferCreate,
                   p: Principal = Depends(require(*STAFF_ROLES))) -> RequestRead:
    doc = await scoped(request, rid, p)
    return request_read(await svc_of(request).commands.transfer(doc, p.sub, body.to_grid, body.reason))


@work_router.post("/requests/{rid}/resolve", response_model=RequestRead)
async def resolve(request: Request, rid: str, body: ResolveCreate,
                  p: Principal = Depends(require(*STAFF_ROLES))) -> RequestRead:
    doc = await scoped(request, rid, p)
    return request_read(await svc_of(request).commands.resolve(doc, p.sub, body.resolution_note))


@work_router.post("/requests/{rid}/reject", response_model=RequestRead)
async def reject(request: Request, rid: str, body: RejectCreate,
                 p: Principal = Depends(require(*STAFF_ROLES))) -> RequestRead:
    doc = await scoped(request, rid, p)
    return request_read(await svc_of(request).commands.reject(doc, p.sub, body.reason))


@work_router.post("/requests/{rid}/reassign", response_model=RequestRead, summary="Supervisor reassignment")
async def reassign(request: Request, rid: str, body: ReassignCreate,
                   p: Principal = Depends(require("supervisor"))) -> RequestRead:
    doc = await scoped(request, rid, p)
    return request_read(await svc_of(request).commands.reassign(doc, p.sub, body.to_staff, body.reason))


@work_router.post("/requests/{rid}/dispatches/{dispatch_id}/acknowledge", response_model=RequestRead)
async def acknowledge(request: Request, rid: str, dispatch_id: str,
                      p: Principal = Depends(require("department"))) -> RequestRead:
    doc = await scoped(request, rid, p)
    return request_read(await svc_of(request).commands.acknowledge(doc, dispatch_id, p.sub))


@work_router.post("/requests/{rid}/dispatches/{dispatch_id}/report", response_model=RequestRead)
async def report(request: Request, rid: str, dispatch_id: str, body: ReportCreate,
                 p: Principal = Depends(require("department"))) -> RequestRead:
    doc = await scoped(request, rid, p)
    return request_read(await svc_of(request).commands.report(doc, dispatch_id, p.sub, body.outcome))


def staff_read(svc: GridService, m: StaffMember) -> StaffRead:
    return StaffRead(id=m.id, name=m.name, role=m.role, area=m.area, level=m.level, lines=list(m.lines),
                     active=m.active, duty=m.duty, leave_until=m.leave_until, away_until=m.away_until, load=m.load,
                     limit=m.limit, version=m.version, unavailable=svc.roster.unavailable(m))


def post_read(svc: GridService, v: PostView, *, holder: str | None = None) -> PostRead:
    p = v.post
    return PostRead(id=p.id, area=p.area, line=p.line, level=p.level, version=p.version, a_id=p.a, b_id=p.b,
                    a=staff_read(svc, v.a) if v.a else None, b=staff_read(svc, v.b) if v.b else None,
                    serving=v.cover.serving, reason=v.cover.reason,
                    as_holder=p.holder_label(holder) if holder else None)


async def member_in_scope(svc: GridService, p: Principal, staff_id: str) -> StaffMember:
    """The staff member, if the caller may see them: themselves, or someone in their area."""
    m = await svc.roster.member(staff_id)
    if p.sub != staff_id:
        require_area(p, m.area)
    return m


@work_router.get("/staff/{staff_id}", response_model=StaffRead)
async def get_staff(request: Request, staff_id: str, p: Principal = Depends(require(*STAFF_ROLES))) -> StaffRead:
    svc = svc_of(request)
    return staff_read(svc, await member_in_scope(svc, p, staff_id))


@work_router.put("/staff/{staff_id}/duty", response_model=StaffRead, summary="Duty status, leave, load limit")
async def set_duty(request: Request, staff_id: str, body: DutyUpdate,
                   p: Principal = Depends(require("supervisor")), x_change_reason: ChangeReason = None) -> StaffRead:
    svc = svc_of(request)
    require_area(p, (await svc.roster.member(staff_id)).area)
    m = await svc.roster.set_duty(p, staff_id, duty=body.duty,
                                  leave_until=body.leave_until.isoformat() if body.leave_until else None,
                                  away_until=body.away_until, limit=body.limit, version=body.version,
                                  reason=said(x_change_reason))
    return staff_read(svc, m)


@work_router.get("/departments", summary="Departments and what they enforce")
async def departments(request: Request) -> list[dict[str, Any]]:
    return await svc_of(request).ctx.roster.list_departments()


roster_router = APIRouter(prefix="/v1", tags=["roster"], route_class=GridRoute)


@roster_router.get("/roster/posts", response_model=PostList,
                   summary="The A/B posts of an area: holders, duty, load and who serves each now")
async def area_posts(request: Request, area: str = Query(pattern=AREA_CODE),
                     p: Principal = Depends(require("supervisor"))) -> PostList:
    require_area(p, area)  # supervisors read their own area; administrators every one
    svc = svc_of(request)
    return PostList(area=area, posts=[post_read(svc, v) for v in await svc.roster.posts_of_area(area)])


@roster_router.put("/roster/posts/{post_id}", response_model=PostRead, summary="Give a post its A and B")
async def change_post(request: Request, post_id: str, body: PostUpdate, p: Principal = Depends(require()),
                      x_change_reason: ChangeReason = None) -> PostRead:
    svc = svc_of(request)
    view = await svc.roster.change_post(p, post_id, a=body.a, b=body.b, version=body.version, reason=said(x_change_reason))
    return post_read(svc, view)


@roster_router.get("/roster/staff", response_model=list[StaffRead], summary="The staff of an area")
async def area_staff(request: Request, area: str = Query(pattern=AREA_CODE),
                     p: Principal = Depends(require("supervisor"))) -> list[StaffRead]:
    require_area(p, area)
    svc = svc_of(request)
    return [staff_read(svc, m) for m in await svc.roster.members_of_area(area)]


@roster_router.post("/roster/staff", response_model=StaffRead, status_code=201, summary="Add a staff member")
async def add_staff(request: Request, body: StaffCreate, p: Principal = Depends(require()),
                    x_change_reason: ChangeReason = None) -> StaffRead:
    svc = svc_of(request)
    city_or_503(svc)  # the area is checked against the map
    m = await svc.roster.add_member(p, body.id, name=body.name, role=body.role, area=body.area, lines=body.lines,
                                    limit=body.limit, reason=said(x_change_reason))
    return staff_read(svc, m)


@roster_router.put("/roster/staff/{staff_id}", response_model=StaffRead,
                   summary="Update a staff member: name, role, area, trained lines, load limit, on the roster")
async def update_staff(request: Request, staff_id: str, body: StaffUpdate, p: Principal = Depends(require()),
                       x_change_reason: ChangeReason = None) -> StaffRead:
    svc = svc_of(request)
    city_or_503(svc)
    m = await svc.roster.update_member(p, staff_id, name=body.name, role=body.role, area=body.area,
                                       lines=body.lines, limit=body.limit, active=body.active, version=body.version,
                                       reason=said(x_change_reason))
    return staff_read(svc, m)


@roster_router.get("/staff/{staff_id}/posts", response_model=list[PostRead],
                   summary="The posts someone holds, with who serves each now (who covers for whom)")
async def staff_posts(request: Request, staff_id: str,
                      p: Principal = Depends(require(*STAFF_ROLES))) -> list[PostRead]:
    svc = svc_of(request)
    await member_in_scope(svc, p, staff_id)
    return [post_read(svc, v, holder=staff_id) for v in await svc.roster.posts_of_member(staff_id)]


@roster_router.put("/me/duty", response_model=StaffRead, summary="Set myself on duty or away")
async def own_duty(request: Request, body: OwnDutyUpdate, p: Principal = Depends(require(*STAFF_ROLES))) -> StaffRead:
    svc = svc_of(request)
    m = await svc.roster.set_duty(p, p.sub, duty=body.duty, away_until=body.away_until, version=body.version)
    return staff_read(svc, m)


def build_app(settings: GridSettings | None = None) -> FastAPI:
    settings = settings or GridSettings()

    async def factory():
        return await bootstrap(settings)

    app = create_app(title="civicgrid grid", version="0.1.0",
                     description="Grid map, A/B posts, departments and the staff's work queues",
                     runtime_factory=factory, settings=settings)
    app.include_router(map_router)
    app.include_router(work_router)
    app.include_router(roster_router)
    return app
