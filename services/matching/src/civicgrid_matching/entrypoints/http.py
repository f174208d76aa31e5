"""HTTP API (thin views): volunteers answer offers and log hours; staff keep the registry, see
rankings explained, approve or correct hours and pull records and reports."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import PlainTextResponse

from civicgrid_matching import registry
from civicgrid_matching.domain import reports, scoring
from civicgrid_matching.domain.index import MatchQuery, why_text
from civicgrid_matching.domain.model import DomainError
from civicgrid_matching.handlers import Matching, now_utc
from civicgrid_matching.schemas import (
    CompleteBody,
    CorrectHours,
    DeclineBody,
    PreviewRequest,
    QualificationVerify,
    VolunteerCreate,
    VolunteerRead,
    VolunteerUpdate,
)
from civicgrid_matching.settings import MatchingSettings
from civicgrid_runtime import Problem
from civicgrid_runtime.auth import Principal, require
from civicgrid_runtime.problems import problem_response
from civicgrid_runtime.service import create_app

STAFF = ("supervisor", "grid_worker")
MONTH = r"^\d{4}-\d{2}$"


def svc(request: Request) -> Matching:
    return request.app.state.service.matching


def _clean(doc: dict | None) -> dict | None:
    if doc is None:
        return None
    return {k: v for k, v in doc.items() if not k.startswith("_") or k == "_id"}


staff = APIRouter(tags=["staff"])
volunteer = APIRouter(prefix="/me", tags=["volunteer"])


@staff.post("/volunteers", status_code=201, response_model=VolunteerRead)
async def register_volunteer(body: VolunteerCreate, request: Request, p: Principal = Depends(require(*STAFF))):
    return registry.to_read(await registry.register(svc(request), body, p.sub))


@staff.get("/volunteers", response_model=list[VolunteerRead])
async def list_volunteers(request: Request, community: str | None = Query(None, max_length=64),
                          limit: int = Query(100, ge=1, le=1000), skip: int = Query(0, ge=0, le=10_000_000),
                          _: Principal = Depends(require(*STAFF))):
    f = {"community": community} if community else {}
    docs = await svc(request).cols.volunteers.find(f).sort("_id", 1).skip(skip).limit(limit).to_list(None)
    return [registry.to_read(d) for d in docs]


@staff.get("/volunteers/{vid}", response_model=VolunteerRead)
async def get_volunteer(vid: str, request: Request, _: Principal = Depends(require(*STAFF))):
    return registry.to_read(await registry.get(svc(request), vid))


@staff.patch("/volunteers/{vid}", response_model=VolunteerRead)
async def update_volunteer(vid: str, body: VolunteerUpdate, request: Request,
                           _: Principal = Depends(require(*STAFF))):
    return registry.to_read(await registry.update(svc(request), vid, body))


@staff.post("/volunteers/{vid}/qualifications", response_model=VolunteerRead)
async def verify_qualification(vid: str, body: QualificationVerify, request: Request,
                               p: Principal = Depends(require(*STAFF))):
    return registry.to_read(await registry.verify_qualification(svc(request), vid, body, p.sub))


@staff.get("/volunteers/{vid}/certificate")
async def certificate(vid: str, request: Request, _: Principal = Depends(require(*STAFF))):
    m = svc(request)
    vol = await registry.get(m, vid)
    entries = await m.cols.hours.find({"volunteer_id": vid}).to_list(None)
    return reports.certificate(vol, entries, now_utc())


@staff.get("/volunteers/{vid}/hours")
async def volunteer_hours(vid: str, request: Request, _: Principal = Depends(require(*STAFF))):
    return [_clean(e) for e in await svc(request).cols.hours.find({"volunteer_id": vid}).to_list(None)]


@staff.get("/matches/{request_id}")
async def get_match(request_id: str, request: Request, _: Principal = Depends(require(*STAFF))):
    """The request's match: offers in rank order, each with its score and *why* (the formula)."""
    doc = await svc(request).cols.matches.find_one({"_id": request_id})
    if doc is None:
        raise Problem(404, "Not found", f"No match for request {request_id}")
    out = _clean(doc)
    out["offers"] = sorted(({"offer_id": k, **o, "why": why_text(o["rank"], o["score"], o["distance_m"],
                                                                  o["components"])}
                            for k, o in (doc.get("offers") or {}).items()), key=lambda o: o["rank"])
    out["formula"] = scoring.formula(svc(request).index.weights, bool(doc.get("recurring")))
    out.pop("asked", None)
    return out


@staff.post("/matches/{request_id}/no-show")
async def no_show(request_id: str, request: Request, p: Principal = Depends(require(*STAFF))):
    return _clean(await svc(request).no_show(request_id, p.sub))


@staff.post("/match/preview")
async def preview(body: PreviewRequest, request: Request, _: Principal = Depends(require(*STAFF))):
    """Rank volunteers for a hypothetical request, with every component of the score explained."""
    m = svc(request)
    svc_doc = m.catalogue.get(body.service_code) or {}
    q = MatchQuery(lat=body.lat, lon=body.lon, service_code=body.service_code, start=body.needed_from,
                   hours=body.needed_hours, required_qualifications=tuple(svc_doc.get("required_qualifications", [])),
                   resident_ref=body.resident_ref, recurring=body.recurring_weekly,
                   distance_limit_m=m.settings.distance_limit_m)
    res = m.index.match(q, limit=body.limit)
    return {"formula": scoring.formula(m.index.weights, body.recurring_weekly), "funnel": res.funnel,
            "candidates": [c.as_dict() for c in res.candidates]}


@staff.post("/hours/{entry_id}/approve")
async def approve_hours(entry_id: str, request: Request, p: Principal = Depends(require(*STAFF))):
    return _clean(await svc(request).approve_hours(entry_id, p.sub))


@staff.post("/hours/{entry_id}/correct")
async def correct_hours(entry_id: str, body: CorrectHours, request: Request,
                        p: Principal = Depends(require(*STAFF))):
    return _clean(await svc(request).correct_hours(entry_id, p.sub, body.hours, body.reason))


@staff.get("/reports/service-times")
async def service_times(request: Request, month: str = Query(pattern=MONTH),
                        _: Principal = Depends(require(*STAFF, "auditor"))):
    """Hours and service person-times per community and per volunteer for one month."""
    m = svc(request)
    entries = await m.cols.hours.find({"month": month}).to_list(None)
    ids = list({e["volunteer_id"] for e in entries})
    vols = {v["_id"]: v for v in await m.cols.volunteers.find({"_id": {"$in": ids}}, {"community": 1}).to_list(None)}
    return reports.service_times(entries, vols, month)


async def _work_unit(m: Matching, unit: str, month: str) -> dict:
    members = await m.cols.volunteers.find({"work_unit": unit, "party_member": True}).to_list(None)
    ids = [v["_id"] for v in members]
    entries = await m.cols.hours.find({"volunteer_id": {"$in": ids}, "month": month}).to_list(None)
    return reports.work_unit_report(unit, members, entries, month)


@staff.get("/reports/work-units")
async def work_units(request: Request, _: Principal = Depends(require(*STAFF))) -> list[str]:
    return sorted(u for u in await svc(request).cols.volunteers.distinct("work_unit") if u)


@staff.get("/reports/work-units/{unit}", responses={200: {"description": "The report, as JSON or CSV",
                                                          "content": {"application/json": {}, "text/csv": {}}}})
async def work_unit_report(unit: str, request: Request, month: str = Query(pattern=MONTH),
                           format: str = Query("json", pattern="^(json|csv)$"),
                           _: Principal = Depends(require(*STAFF))) -> Any:
    """The periodic report to a party member's work unit on how its members served (JSON or CSV)."""
    rep = await _work_unit(svc(request), unit, month)
    if format == "csv":
        return PlainTextResponse(reports.to_csv(rep), media_type="text/csv")
    return rep


# ----------------------------------------------------------------------------- volunteers


def me(p: Principal = Depends(require("volunteer"))) -> Principal:
    return p


@volunteer.get("")
async def my_record(request: Request, p: Principal = Depends(me)):
    return registry.to_read(await registry.get(svc(request), p.sub))


@volunteer.get("/offers")
async def my_offers(request: Request, p: Principal = Depends(me)):
    return await svc(request).my_offers(p.sub)


@volunteer.post("/offers/{offer_id}/accept")
async def accept(offer_id: str, request: Request, p: Principal = Depends(me)):
    doc = await svc(request).accept(p.sub, offer_id)
    return {"request_id": doc["_id"], "offer_id": offer_id, "status": doc["offers"][offer_id]["status"],
            "winner": doc.get("winner"), "needed_from": doc["needed_from"], "needed_hours": doc["needed_hours"]}


@volunteer.post("/offers/{offer_id}/decline")
async def decline(offer_id: str, request: Request, body: DeclineBody | None = None, p: Principal = Depends(me)):
    doc = await svc(request).decline(p.sub, offer_id, body.reason if body else None)
    return {"request_id": doc["_id"], "offer_id": offer_id, "status": doc["offers"][offer_id]["status"]}


@volunteer.post("/assignments/{request_id}/check-in")
async def check_in(request_id: str, request: Request, p: Principal = Depends(me)):
    return _clean(await svc(request).check_in(p.sub, request_id))


@volunteer.post("/assignments/{request_id}/check-out")
async def check_out(request_id: str, request: Request, p: Principal = Depends(me)):
    return _clean(await svc(request).check_out(p.sub, request_id))


@volunteer.post("/assignments/{request_id}/complete")
async def complete(request_id: str, request: Request, body: CompleteBody | None = None, p: Principal = Depends(me)):
    return _clean(await svc(request).complete(p.sub, request_id, body.note if body else None))


@volunteer.get("/hours")
async def my_hours(request: Request, p: Principal = Depends(me)):
    return [_clean(e) for e in await svc(request).cols.hours.find({"volunteer_id": p.sub}).to_list(None)]


def build_app(settings: MatchingSettings, *, factory=None) -> FastAPI:
    from civicgrid_matching.bootstrap import build

    app = create_app(title="civicgrid matching", version="0.1.0",
                     description="Volunteer registry, fair matching, offers, hours and reports",
                     runtime_factory=factory or (lambda: build(settings)), settings=settings)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError):
        return problem_response(Problem(exc.status, exc.code.replace("_", " ").capitalize(), exc.message,
                                        type_=exc.code), request)

    app.include_router(staff)
    app.include_router(volunteer)
    return app


