"""Supervisor pages: area map and late lists, a grid's requests, KPIs with charts, the quarterly
evaluation with its CSV export."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from civicgrid_console.domain import i18n
from civicgrid_console.domain.session import Session
from civicgrid_console.entrypoints.web import PageProblem, console_of, live_page, need, render
from civicgrid_console.handlers import supervisor

router = APIRouter()
Supervisor = Depends(need("supervisor"))
Reader = Depends(need("supervisor", "auditor"))
DIMENSIONS = ("all", "district", "street", "community", "grid", "staff", "property", "service", "department")
EVALUATED = ("staff", "grid", "community", "department", "property")
RATES = ("response_rate", "resolution_rate", "satisfaction_rate", "response_on_time_rate",
         "resolution_on_time_rate", "reopen_rate")
COUNTS = ("received", "resolved", "overdue", "escalations", "unsatisfied")


def today(request: Request):
    return datetime.now(console_of(request).tz).date()


@live_page(router, "/supervise")
async def overview(request: Request, s: Session = Supervisor):
    data = await supervisor.overview(console_of(request).apis, s.token, s.area)
    return render(request, "supervise.html", **data)


@live_page(router, "/supervise/grid/{grid}")
async def grid_requests(request: Request, grid: str, s: Session = Supervisor):
    items = await supervisor.grid_requests(console_of(request).apis, s.token, grid)
    return render(request, "grid_requests.html", grid=grid, items=items)


@live_page(router, "/supervise/kpis")
async def kpis(request: Request, s: Session = Reader, dimension: str = "", key: str = "",
               start: str = Query("", alias="from"), end: str = Query("", alias="to")):
    start_d, end_d = supervisor.default_period(today(request))
    dimension = dimension if dimension in DIMENSIONS else supervisor.own_dimension(s.area)
    key = key or s.area or "*"
    data = await supervisor.kpis(console_of(request).apis, s.token, dimension, key, start or start_d, end or end_d)
    chart = {"rates": [[k, None if data.get(k) is None else round(100 * data[k], 1)] for k in RATES],
             "counts": [[k, data.get(k) or 0] for k in COUNTS],
             "labels": {k: i18n.t(s.lang, f"kpi.{k}") for k in (*RATES, *COUNTS)}}
    return render(request, "kpis.html", k=data, dimension=dimension, key=key, start=start or start_d,
                  end=end or end_d, dimensions=DIMENSIONS, rates=RATES, counts=COUNTS, chart=chart)


@router.get("/supervise/evaluation")
async def evaluation(request: Request, s: Session = Reader, quarter: str = "", dimension: str = "grid"):
    quarter = (quarter or supervisor.quarter_of(today(request))).upper()
    dimension = dimension if dimension in EVALUATED else "grid"
    ev = await supervisor.evaluation(console_of(request).apis, s.token, quarter)
    return render(request, "evaluation.html", ev=ev, quarter=quarter, dimension=dimension,
                  rows=ev["dimensions"].get(dimension, []), dimensions=EVALUATED)


@router.get("/supervise/evaluation.csv")
async def evaluation_csv(request: Request, quarter: str, dimension: str, s: Session = Reader):
    if dimension not in EVALUATED:
        raise PageProblem(422, "error.invalid_form")
    body = await supervisor.evaluation_csv(console_of(request).apis, s.token, quarter.upper(), dimension)
    return Response(body, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="evaluation-{quarter.upper()}-{dimension}.csv"'})
