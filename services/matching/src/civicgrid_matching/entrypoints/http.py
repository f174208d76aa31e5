"""HTTP API (thin views): translate requests to handler calls and aggregates to JSON. Volunteers
answer offers and log hours; staff keep the registry, see rankings explained, approve or correct
hours and pull records and reports -- within their area scope, which the views pass on and the
handlers apply (``domain.scope``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import PlainTextResponse

from civicgrid_matching.domain import reports
from civicgrid_matching.domain.errors import MatchingError
from civicgrid_matching.domain.hours import HoursEntry
from civicgrid_matching.domain.index import MatchQuery, why_text
from civicgrid_matching.domain.match import Match
from civicgrid_matching.domain.scope import DISTRICT, AreaScope
from civicgrid_matching.domain.volunteer import Volunteer
from civicgrid_matching.handlers import Matching, hours, offers, queries, registry
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


def scope(p: Principal) -> AreaScope:
    return AreaScope.of(p.role, p.area)


# ----------------------------------------------------------------------------- shaping


def volunteer_read(v: Volunteer, ctx: Matching) -> VolunteerRead:
    now = ctx.clock()
    quals = {c: {"expires_at": q.expires_at, "verified_by": q.verified_by, "verified_at": q.verified_at,
                 "valid": q.valid_at(now)} for c, q in v.qualifications.items()}
    return VolunteerRead(
        id=v.id, name=v.name, phone=v.phone, community=v.community, lat=v.lat, lon=v.lon, skills=v.skills,
        qualifications=quals, availability=v.availability, exceptions=v.exceptions, on_duty=v.on_duty,
        weekly_hours_cap=v.weekly_hours_cap, languages=v.languages, party_member=v.party_member,
        work_unit=v.work_unit, stats=v.stats, rating_count=len(v.ratings), rating_mean=v.rating_mean,
        created_at=v.created_at, updated_at=v.updated_at)


def entry_json(e: HoursEntry) -> dict[str, Any]:
    out = {k: v for k, v in asdict(e).items() if k not in ("events", "version")}
    out["_id"] = e.id  # the first version's answers named the id so; clients still read it
    return out


def match_json(m: Match, ctx: Matching) -> dict[str, Any]:
    """The match: offers in rank order, each with its score and *why* (the formula)."""
    v = m.visit
    return {
        "_id": m.request_id, "request_id": m.request_id, "status": m.status, "winner": m.winner,
        "service_code": v.service_code, "lat": v.lat, "lon": v.lon, "community": v.community,
        "needed_from": v.needed_from, "needed_hours": v.needed_hours, "recurring": v.recurring,
        "required_qualifications": v.required_qualifications, "generation": m.generation,
        "accepted_at": m.accepted_at, "unmatched": m.unmatched, "no_show": m.no_show, "rating": m.rating,
        "offered_to": m.offered_to, "next_expiry": m.next_expiry,
        "offers": [{**asdict(o), "why": why_text(o.rank, o.score, o.distance_m, o.components)}
                   for o in sorted(m.offers, key=lambda o: o.rank)],
        "formula": queries.formula(ctx, v.recurring),
    }


staff = APIRouter(tags=["staff"])
volunteer = APIRouter(prefix="/me", tags=["volunteer"])


@staff.post("/volunteers", status_code=201, response_model=VolunteerRead)
async def register_volunteer(body: VolunteerCreate, request: Request, p: Principal = Depends(require(*STAFF))):
    ctx = svc(request)
    profile = body.model_dump(mode="python", exclude={"id"})
    return volunteer_read(await registry.register(ctx, profile, p.sub, body.id, scope=scope(p)), ctx)


@staff.get("/volunteers", response_model=list[VolunteerRead])
async def list_volunteers(request: Request, community: str | None = Query(None, max_length=64),
                          limit: int = Query(100, ge=1, le=1000), skip: int = Query(0, ge=0, le=10_000_000),
                          p: Principal = Depends(require(*STAFF))):
    """The volunteers living in the caller's area (narrowed to ``community`` when given)."""
    ctx = svc(request)
    return [volunteer_read(v, ctx) for v in await queries.volunteers(ctx, community, skip, limit, scope=scope(p))]


@staff.get("/volunteers/{vid}", response_model=VolunteerRead)
async def get_volunteer(vid: str, request: Request, p: Principal = Depends(require(*STAFF))):
    return volunteer_read(await registry.get(svc(request), vid, scope=scope(p)), svc(request))


@staff.patch("/volunteers/{vid}", response_model=VolunteerRead)
async def update_volunteer(vid: str, body: VolunteerUpdate, request: Request,
                           p: Principal = Depends(require(*STAFF))):
    ctx = svc(request)
    profile = body.model_dump(mode="python", exclude_unset=True)
    return volunteer_read(await registry.update(ctx, vid, profile, scope=scope(p)), ctx)


@staff.post("/volunteers/{vid}/qualifications", response_model=VolunteerRead)
async def verify_qualification(vid: str, body: QualificationVerify, request: Request,
                               p: Principal = Depends(require(*STAFF))):
    ctx = svc(request)
    v = await registry.verify_qualification(ctx, vid, body.code, body.expires_on, body.evidence, p.sub,
                                            scope=scope(p))
    return volunteer_read(v, ctx)


@staff.get("/volunteers/{vid}/certificate")
async def certificate(vid: str, request: Request, p: Principal = Depends(require(*STAFF))):
    return await queries.certificate(svc(request), vid, scope=scope(p))


@staff.get("/volunteers/{vid}/hours")
async def volunteer_hours(vid: str, request: Request, p: Principal = Depends(require(*STAFF))):
    return [entry_json(e) for e in await queries.volunteer_hours(svc(request), vid, scope=scope(p))]


@staff.get("/matches/{request_id}")
async def get_match(request_id: str, request: Request, p: Principal = Depends(require(*STAFF))):
    ctx = svc(request)
    return match_json(await queries.match(ctx, request_id, scope=scope(p)), ctx)


@staff.post("/matches/{request_id}/no-show")
async def no_show(request_id: str, request: Request, p: Principal = Depends(require(*STAFF))):
    ctx = svc(request)
    return match_json(await offers.no_show(ctx, request_id, p.sub, scope=scope(p)), ctx)


@staff.post("/match/preview")
async def preview(body: PreviewRequest, request: Request, p: Principal = Depends(require(*STAFF))):
    """Rank volunteers for a hypothetical request, with every component of the score explained
    (candidates from outside the caller's area left out)."""
    ctx = svc(request)
    q = MatchQuery(lat=body.lat, lon=body.lon, service_code=body.service_code, start=body.needed_from,
                   hours=body.needed_hours, required_qualifications=tuple(ctx.qualifications(body.service_code)),
                   resident_ref=body.resident_ref, recurring=body.recurring_weekly,
                   distance_limit_m=ctx.settings.distance_limit_m)
    res = await queries.preview(ctx, q, body.limit, scope=scope(p))
    return {"formula": queries.formula(ctx, body.recurring_weekly), "funnel": res.funnel,
            "candidates": [c.as_dict() for c in res.candidates]}


@staff.post("/hours/{entry_id}/approve")
async def approve_hours(entry_id: str, request: Request, p: Principal = Depends(require(*STAFF))):
    return entry_json(await hours.approve(svc(request), entry_id, p.sub, scope=scope(p)))


@staff.post("/hours/{entry_id}/correct")
async def correct_hours(entry_id: str, body: CorrectHours, request: Request,
                        p: Principal = Depends(require(*STAFF))):
    return entry_json(await hours.correct(svc(request), entry_id, p.sub, body.hours, body.reason, scope=scope(p)))


@staff.get("/reports/service-times")
async def service_times(request: Request, month: str = Query(pattern=MONTH),
                        p: Principal = Depends(require(*STAFF, "auditor"))):
    """Hours and service person-times per community and per volunteer for one month, of the
    services given in the caller's area."""
    return await queries.service_times(svc(request), month, scope=scope(p))


@staff.get("/reports/work-units")
async def work_units(request: Request, p: Principal = Depends(require(*STAFF))) -> list[str]:
    """The work units of the party members living in the caller's area."""
    return await queries.work_units(svc(request), scope=scope(p))


@staff.get("/reports/work-units/{unit}", responses={200: {"description": "The report, as JSON or CSV",
                                                          "content": {"application/json": {}, "text/csv": {}}}})
async def work_unit_report(unit: str, request: Request, month: str = Query(pattern=MONTH),
                           format: str = Query("json", pattern="^(json|csv)$"),
                           p: Principal = Depends(require(*STAFF))) -> Any:
    """The periodic report to a party member's work unit on how its members served (JSON or CSV);
    of the members living in the caller's area."""
    rep = await queries.work_unit_report(svc(request), unit, month, scope=scope(p))
    if format == "csv":
        return PlainTextResponse(reports.to_csv(rep), media_type="text/csv")
    return rep


# ----------------------------------------------------------------------------- volunteers


def me(p: Principal = Depends(require("volunteer"))) -> Principal:
    return p


@volunteer.get("")
async def my_record(request: Request, p: Principal = Depends(me)):
    return volunteer_read(await registry.get(svc(request), p.sub, scope=DISTRICT), svc(request))


@volunteer.get("/offers")
async def my_offers(request: Request, p: Principal = Depends(me)):
    return await queries.my_offers(svc(request), p.sub)


@volunteer.post("/offers/{offer_id}/accept")
async def accept(offer_id: str, request: Request, p: Principal = Depends(me)):
    m = await offers.accept(svc(request), p.sub, offer_id)
    o = m.offer(offer_id, p.sub)
    return {"request_id": m.request_id, "offer_id": offer_id, "status": o.status, "winner": m.winner,
            "needed_from": m.visit.needed_from, "needed_hours": m.visit.needed_hours}


@volunteer.post("/offers/{offer_id}/decline")
async def decline(offer_id: str, request: Request, body: DeclineBody | None = None, p: Principal = Depends(me)):
    m = await offers.decline(svc(request), p.sub, offer_id, body.reason if body else None)
    return {"request_id": m.request_id, "offer_id": offer_id, "status": m.offer(offer_id, p.sub).status}


@volunteer.post("/assignments/{request_id}/check-in")
async def check_in(request_id: str, request: Request, p: Principal = Depends(me)):
    return entry_json(await hours.check_in(svc(request), p.sub, request_id))


@volunteer.post("/assignments/{request_id}/check-out")
async def check_out(request_id: str, request: Request, p: Principal = Depends(me)):
    return entry_json(await hours.check_out(svc(request), p.sub, request_id))


@volunteer.post("/assignments/{request_id}/complete")
async def complete(request_id: str, request: Request, body: CompleteBody | None = None, p: Principal = Depends(me)):
    return entry_json(await hours.complete(svc(request), p.sub, request_id, body.note if body else None))


@volunteer.get("/hours")
async def my_hours(request: Request, p: Principal = Depends(me)):
    return [entry_json(e) for e in await queries.hours_of(svc(request), p.sub)]


def build_app(settings: MatchingSettings, *, factory=None) -> FastAPI:
    from civicgrid_matching.bootstrap import build

    app = create_app(title="civicgrid matching", version="0.1.0",
                     description="Volunteer registry, fair matching, offers, hours and reports",
                     runtime_factory=factory or (lambda: build(settings)), settings=settings)

    @app.exception_handler(MatchingError)
    async def _domain(request: Request, exc: MatchingError):
        return problem_response(Problem(exc.status, exc.code.replace("_", " ").capitalize(), exc.message,
                                        type_=exc.code), request)

    app.include_router(staff)
    app.include_router(volunteer)
    return app
