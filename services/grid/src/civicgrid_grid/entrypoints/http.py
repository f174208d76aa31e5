"""HTTP API of the grid service: the map (public reads, admin import), staff work queues and the
actions on a request. Views are thin: they check the caller and call ``Commands``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Query, Request
from pydantic import BaseModel, Field

from civicgrid_grid.bootstrap import GridService, bootstrap
from civicgrid_grid.domain.citygen import to_geojson
from civicgrid_grid.domain.validation import MapRejected, parse_and_validate
from civicgrid_grid.handlers import OPEN
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


class DutyUpdate(BaseModel):
    duty: Literal["on", "off", "leave"]
    leave_until: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    limit: int | None = Field(default=None, ge=1, le=100000)


class StaffRead(BaseModel):
    id: str
    name: str | None = None
    role: str | None = None
    area: str | None = None
    level: str | None = None
    duty: str
    leave_until: str | None = None
    load: int
    limit: int


# ------------------------------------------------------------------------------------ helpers
def svc_of(request: Request) -> GridService:
    return request.app.state.service


def request_read(doc: dict) -> RequestRead:
    area = doc.get("area") or {}
    return RequestRead(request_id=doc["_id"], status=doc.get("status", "?"), priority=doc.get("priority"),
                       service_code=doc.get("service_code"), due_response=doc.get("due_response"),
                       due_resolution=doc.get("due_resolution"), grid=area.get("grid"), holder=doc.get("holder"),
                       reason=doc.get("reason"), attention=doc.get("attention") or [],
                       assignee_id=doc.get("assignee_id"), level=doc.get("level"), post_id=doc.get("post_id"),
                       map_version=doc.get("map_version"), area=area, handled_by=doc.get("handled_by") or [],
                       dispatches=doc.get("dispatches") or {}, notes=doc.get("notes") or [],
                       transfers=doc.get("transfers") or [], escalations=doc.get("escalations") or [])


def area_code(doc: dict) -> str | None:
    a = doc.get("area") or {}
    return a.get("grid") or a.get("community") or a.get("street")


async def scoped(request: Request, rid: str, p: Principal) -> dict:
    doc = await svc_of(request).commands.load(rid)
    if p.role == "department":
        if p.sub not in (doc.get("dispatched_to") or []):
            raise Problem(403, "Not dispatched to you", f"Request {rid} was not dispatched to {p.sub}.",
                          type_="forbidden")
        return doc
    if p.role == "grid_worker" and doc.get("assignee_id") == p.sub:
        return doc
    require_area(p, area_code(doc))
    return doc


def city_or_503(svc: GridService):
    if svc.ctx.city is None:
        raise Problem(503, "No map loaded", "No map version is active yet; import one.", headers={"Retry-After": "5"})
    return svc.ctx.city


# ------------------------------------------------------------------------------------ routers
ChangeReason = Annotated[str | None, Header(max_length=200, description="Why (kept in the audit trail)")]

map_router = APIRouter(prefix="/v1/map", tags=["map"])


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


work_router = APIRouter(prefix="/v1", tags=["work"])


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
    col = svc_of(request).ctx.requests.col
    filt = {"dispatched_to": who} if department else {"assignee_id": who}
    filt["status"] = {"$in": list(OPEN)}
    docs = await col.find(filt, {"_outbox": 0, "_applied": 0, "received": 0, "_caused": 0}).sort(
        [("prio", 1), ("due_response", 1)]).to_list(1000)
    return [QueueItem(**request_read(d).model_dump(include=set(QueueItem.model_fields))) for d in docs]


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


@work_router.get("/staff/{staff_id}", response_model=StaffRead)
async def get_staff(request: Request, staff_id: str, p: Principal = Depends(require(*STAFF_ROLES))) -> StaffRead:
    s = await svc_of(request).ctx.staff.get(staff_id)
    if s is None:
        raise Problem(404, "Unknown staff member", f"No staff member {staff_id}.")
    if p.sub != staff_id:
        require_area(p, s.get("area"))
    return StaffRead(id=s["_id"], **{k: s.get(k) for k in ("name", "role", "area", "level", "duty", "leave_until",
                                                            "load", "limit")})


@work_router.put("/staff/{staff_id}/duty", response_model=StaffRead, summary="Duty status, leave, load limit")
async def set_duty(request: Request, staff_id: str, body: DutyUpdate,
                   p: Principal = Depends(require("supervisor")), x_change_reason: ChangeReason = None) -> StaffRead:
    svc = svc_of(request)
    s = await svc.ctx.staff.get(staff_id)
    if s is None:
        raise Problem(404, "Unknown staff member", f"No staff member {staff_id}.")
    require_area(p, s.get("area"))
    if body.duty == "leave" and not body.leave_until:
        raise Problem(422, "Leave needs an end date", "Give leave_until (YYYY-MM-DD).", type_="validation-error",
                      errors=[{"field": "leave_until", "message": "required when duty is leave"}])
    s = await svc.ctx.staff.set_duty(staff_id, duty=body.duty, leave_until=body.leave_until, limit=body.limit)
    await svc.access.admin_changed(p, "roster.duty", staff_id, reason=x_change_reason,
                                   details={"duty": body.duty, "leave_until": body.leave_until, "limit": body.limit})
    return StaffRead(id=s["_id"], **{k: s.get(k) for k in ("name", "role", "area", "level", "duty", "leave_until",
                                                            "load", "limit")})


@work_router.get("/departments", summary="Departments and what they enforce")
async def departments(request: Request) -> list[dict[str, Any]]:
    return await svc_of(request).ctx.roster.departments.find({}).sort("_id", 1).to_list(None)


def build_app(settings: GridSettings | None = None) -> FastAPI:
    settings = settings or GridSettings()

    async def factory():
        return await bootstrap(settings)

    app = create_app(title="civicgrid grid", version="0.1.0",
                     description="Grid map, A/B posts, departments and the staff's work queues",
                     runtime_factory=factory, settings=settings)
    app.include_router(map_router)
    app.include_router(work_router)
    return app
