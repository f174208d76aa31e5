"""HTTP API of audit (thin views over ``Queries`` and ``AuditLog``)."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from civicgrid_audit.adapters.export import COLUMNS
from civicgrid_audit.domain.kpi import AREA_DIMENSIONS, quarter_range
from civicgrid_audit.entrypoints.schemas import (
    Dimension,
    EscalatedRead,
    KPIRead,
    OverdueRead,
    RequestTimelineRead,
    VerifyRead,
)
from civicgrid_runtime import Problem
from civicgrid_runtime.auth import Principal, require, require_area

KPI_DOC = """Figures over the requests *received* in the period (local days, Asia/Shanghai by default).

- **response rate** = accepted within the response limit / requests whose response is due or done
  (accepted, or escalated on the response clock); merged duplicates and rejected excluded
- **resolution rate** = resolved / received, excluding merged duplicates and rejected (out of scope)
- **satisfaction rate** = (satisfied + basically satisfied) / rated
- **on-time rates** = within the limit / responded (resolved); report-back = reported by the deadline / dispatched
- **median / p90** handling (received -> resolved) and response (received -> accepted) times in calendar hours,
  from log-scale histogram buckets (sqrt 2 steps from 15 min; the upper edge of the quantile's bucket)
- **reopen rate** = reopened at least once / resolved; **overdue** = missed at least one limit
"""

router = APIRouter()
Staff = Annotated[Principal, Depends(require("supervisor", "auditor", "grid_worker"))]
Supervisor = Annotated[Principal, Depends(require("supervisor", "auditor"))]
Auditor = Annotated[Principal, Depends(require("auditor"))]


def _svc(request: Request):
    return request.app.state.service


@router.get("/requests/{request_id}/timeline", response_model=RequestTimelineRead, tags=["timelines"],
            summary="A request's ordered timeline and state; with as_of, both as they were at that moment")
async def get_timeline(request_id: str, request: Request, p: Staff,
                       as_of: Annotated[datetime | None, Query(description="ISO 8601 moment")] = None):
    if as_of is not None and as_of.tzinfo is None:
        raise Problem(422, "Invalid request", "as_of needs a time zone", type_="validation-error",
                      errors=[{"field": "as_of", "in": "query", "message": "time zone required"}])
    out = await _svc(request).queries.request(request_id, as_of=as_of)
    if out is None:
        raise Problem(404, "Not found", f"No events seen for request {request_id!r}")
    require_area(p, out["state"].get("area_code") or "")
    return out


@router.get("/supervision/overdue", response_model=list[OverdueRead], tags=["supervision"],
            summary="Running clocks past their limit in the caller's area, most late first")
async def overdue(request: Request, p: Supervisor, limit: Annotated[int, Query(ge=1, le=1000)] = 200):
    return await _svc(request).queries.overdue(p.area, limit=limit)


@router.get("/supervision/escalated", response_model=list[EscalatedRead], tags=["supervision"],
            summary="Open requests escalated at least once in the caller's area, most late first")
async def escalated(request: Request, p: Supervisor, limit: Annotated[int, Query(ge=1, le=1000)] = 200):
    return await _svc(request).queries.escalated(p.area, limit=limit)


def _check_scope(p: Principal, dimension: str, key: str) -> None:
    if dimension in AREA_DIMENSIONS:
        require_area(p, key)
    elif p.area and p.role != "admin":
        raise Problem(403, "Outside your area", f"Dimension {dimension!r} spans areas; it needs district scope.",
                      type_="forbidden")


@router.get("/kpis", response_model=KPIRead, response_model_by_alias=True, tags=["kpis"], summary="KPIs",
            description=KPI_DOC)
async def kpis(request: Request, p: Supervisor, dimension: Dimension, from_: Annotated[date, Query(alias="from")],
               to: date, key: str = "*"):
    if to < from_:
        raise Problem(422, "Invalid request", "'to' is before 'from'", type_="validation-error",
                      errors=[{"field": "to", "in": "query", "message": "must not be before from"}])
    _check_scope(p, dimension, key)
    return await _svc(request).queries.kpis(dimension, key, from_.isoformat(), to.isoformat())


@router.get("/evaluations/{quarter}", tags=["kpis"], summary="Quarterly evaluation (季度考評) with ranks",
            responses={200: {"description": "The evaluation, as JSON or one table as CSV",
                             "content": {"application/json": {}, "text/csv": {}}}},
            description="Per staff member, grid, community, department and property company: figures and rank. "
                        "`format=csv` with `dimension` gives one table.\n\n" + KPI_DOC)
async def evaluation(quarter: str, request: Request, p: Supervisor, format: str = "json",
                     dimension: str | None = None):
    try:
        quarter_range(quarter)
    except Exception:  # noqa: BLE001
        raise Problem(422, "Invalid request", "quarter must look like 2026Q4", type_="validation-error",
                      errors=[{"field": "quarter", "in": "path", "message": "expected YYYYQn"}]) from None
    if p.area and p.role != "admin":
        raise Problem(403, "Outside your area", "The evaluation spans the district.", type_="forbidden")
    ev = await _svc(request).queries.evaluation(quarter.upper())
    if format == "csv":
        if dimension not in ev["dimensions"]:
            raise Problem(422, "Invalid request", "csv needs dimension=staff|grid|community|department|property",
                          type_="validation-error", errors=[{"field": "dimension", "in": "query", "message": "required"}])
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(ev["dimensions"][dimension])
        return Response(buf.getvalue(), media_type="text/csv; charset=utf-8")
    return ev


@router.get("/audit/logs", tags=["audit trail"], summary="Every audit log with its head and last signed checkpoint")
async def logs(request: Request, p: Auditor):
    log = _svc(request).log
    await log.flush_heads()  # this replica's heads as of its last batch, not its last write-back
    out = []
    async for h in log.heads.find({}).sort("_id", 1):
        cp = await log.checkpoints.find({"log": h["_id"]}).sort("size", -1).limit(1).to_list(None)
        out.append({"log": h["_id"], "size": h["size"], "last_offset": h["last_offset"], "chain": h["chain"],
                    "checkpoint": {k: cp[0][k] for k in ("size", "root", "timestamp", "signature", "public_key")}
                    if cp else None})
    return out


@router.get("/audit/logs/{log}/verify", response_model=VerifyRead, tags=["audit trail"],
            summary="Verify one log: intact, or the first record altered, removed, inserted or reordered")
async def verify(log: str, request: Request, p: Auditor):
    return await _svc(request).log.verify(log)


@router.get("/audit/staff-access", tags=["audit trail"],
            summary="Staff reads of contact details and admin changes, per staff member or per request")
async def staff_access(request: Request, p: Auditor,
                       staff_id: Annotated[str | None, Query(max_length=200, description="Who acted")] = None,
                       request_id: Annotated[str | None, Query(
                           max_length=200, description="A request id, or an administered object "
                                                       "(catalogue:<code>, calendar:<year>, map:<version>, roster:<staff id>, "
                                                       "requests:<import batch id>)")] = None,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 200):
    if staff_id is None and request_id is None:
        raise Problem(422, "Invalid request", "Name a staff_id or a request_id.", type_="validation-error",
                      errors=[{"field": "staff_id", "in": "query", "message": "staff_id or request_id required"}])
    return await _svc(request).projector.access.list(staff_id=staff_id, subject=request_id, limit=limit)


@router.get("/audit/events/{event_id}/proof", tags=["audit trail"],
            summary="RFC 6962 inclusion proof of an event in its log's latest signed checkpoint")
async def proof(event_id: str, request: Request, p: Auditor):
    out = await _svc(request).log.inclusion(event_id)
    if out is None:
        raise Problem(404, "Not found", f"Event {event_id!r} is not in the audit log")
    return out


@router.post("/audit/checkpoints", tags=["audit trail"], summary="Sign a checkpoint of every grown log now")
async def checkpoint(request: Request, p: Auditor):
    return await _svc(request).log.checkpoint()
