"""Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2) under /open311/v2, JSON and XML.

Field names follow the specification exactly, so an existing Open311 client just works.
Extensions: ``page``/``page_size`` on GET requests, ``locale`` (or ``Accept-Language``) choosing Chinese or
English names and questions, and ``extensions=true`` adds ``notes[]`` (the
status history) and ``extended_attributes``. Errors are the standard list of ``{code, description}``
(400, 403 for a missing or wrong ``api_key``, 404).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from civicgrid_contracts.calendar import OFFICE_ZONE
from civicgrid_intake.domain.commands import ContactIn, LocationIn, SubmitRequest
from civicgrid_intake.domain.errors import IntakeError
from civicgrid_intake.domain.model import OPEN311_CLOSED, OPEN_STATUSES, open311_status
from civicgrid_intake.entrypoints.limits import limit_open311_submissions, limit_reads

#: Open311 answers in JSON or XML (by the path's .json / .xml), its errors as its own list
OPEN311_ERRORS = {"type": "array", "items": {"type": "object", "properties": {
    "code": {"type": "integer"}, "description": {"type": "string"}}}}
OPEN311_CONTENT = {"application/json": {}, "text/xml": {"schema": {"type": "string"}}}
router = APIRouter(prefix="/open311/v2", tags=["open311"], responses={
    **{status: {"description": description, "content": {"application/json": {"schema": OPEN311_ERRORS},
                                                        "text/xml": {"schema": {"type": "string"}}}}
       for status, description in ((400, "Invalid request (Open311 error list)"), (403, "api_key missing or wrong"),
                                   (404, "Not found, or a format other than json/xml"),
                                   (409, "Idempotency-Key reused with another body"), (413, "Body too large"),
                                   (429, "Too many requests (see Retry-After)"), (503, "Busy, retry"))},
    200: {"description": "The answer, as JSON or XML", "content": OPEN311_CONTENT},
    201: {"description": "Created, as JSON or XML", "content": OPEN311_CONTENT}})
SPEC_URL = "http://wiki.open311.org/GeoReport_v2"
MAX_SPAN = timedelta(days=90)
MAX_ROWS = 1000
LIST_TAGS = {"notes": "note", "attributes": "attribute", "values": "value", "endpoints": "endpoint",
             "formats": "format", "extended_attributes": None}
ATTR_RE = re.compile(r"^attribute\[([^\]]+)\](\[\])?$")


class Open311Error(Exception):
    def __init__(self, status: int, description: str, fmt: str = "json") -> None:
        super().__init__(description)
        self.status, self.description, self.fmt = status, description, fmt


def fmt_of(path: str) -> str:
    return "xml" if path.endswith(".xml") else "json"


def _check_fmt(fmt: str) -> str:
    if fmt not in ("json", "xml"):
        raise Open311Error(404, f"format {fmt!r} not supported; use .json or .xml")
    return fmt


# ----------------------------------------------------------------------------- rendering


def _xml_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return _dt(v) or ""
    return escape(str(v))


def _xml_node(tag: str, v: Any) -> str:
    if isinstance(v, dict):
        return f"<{tag}>{''.join(_xml_node(k, x) for k, x in v.items())}</{tag}>"
    if isinstance(v, list):
        child = LIST_TAGS.get(tag) or "item"
        return f"<{tag}>{''.join(_xml_node(child, x) for x in v)}</{tag}>"
    return f"<{tag}>{_xml_value(v)}</{tag}>"


def render(data: Any, fmt: str, *, root: str, item: str | None = None, status: int = 200) -> Response:
    if fmt == "xml":
        if item is not None:
            body = f"<{root}>{''.join(_xml_node(item, x) for x in data)}</{root}>"
        else:
            body = _xml_node(root, data)
        return Response(f'<?xml version="1.0" encoding="utf-8"?>{body}', status_code=status,
                        media_type="text/xml; charset=utf-8")
    return JSONResponse(_jsonable(data), status_code=status)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, datetime):
        return _dt(v)
    return v


def error_response(status: int, description: str, fmt: str = "json", *,
                   headers: dict[str, str] | None = None) -> Response:
    resp = render([{"code": status, "description": description}], fmt, root="errors", item="error", status=status)
    resp.headers.update(headers or {})
    return resp


def _dt(t: datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(OFFICE_ZONE).isoformat(timespec="seconds")


def _parse_dt(raw: str | None, name: str, fmt: str) -> datetime | None:
    if not raw:
        return None
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+", 1) if "T" in raw else raw)
    except ValueError:
        raise Open311Error(400, f"{name}: expected a W3C/ISO 8601 date-time, got {raw!r}", fmt) from None
    return t if t.tzinfo else t.replace(tzinfo=OFFICE_ZONE)


# ----------------------------------------------------------------------------- shapes


def language_of(request: Request) -> str:
    """The language a client reads: ``locale`` ('zh...' or 'en...'), else the first of Chinese or
    English its ``Accept-Language`` prefers, else English (what Open311 clients were always sent)."""
    locale = request.query_params.get("locale")
    if locale:
        return "zh" if locale.lower().startswith("zh") else "en"
    ranked = []
    for i, part in enumerate(request.headers.get("accept-language", "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = params.strip().removeprefix("q=") if params.strip().startswith("q=") else "1"
        try:
            weight = float(q)
        except ValueError:
            continue
        lang = tag.strip().lower()[:2]
        if lang in ("zh", "en") and weight > 0:
            ranked.append((-weight, i, lang))
    return min(ranked)[2] if ranked else "en"


def service_json(s, lang: str = "en") -> dict[str, Any]:
    return {"service_code": s.code, "service_name": s.name_zh if lang == "zh" else s.name_en,
            "description": s.description, "metadata": s.metadata, "type": s.type,
            "keywords": ", ".join(s.keywords), "group": s.group}


def definition_json(s, lang: str = "en") -> dict[str, Any]:
    """Open311's definition: each question (``description``) and answer name in ``lang``; a question
    the catalogue holds in the other language only is sent in that one."""
    return {"service_code": s.code, "attributes": [
        {"variable": a.variable, "code": a.code, "datatype": a.datatype, "required": a.required,
         "datatype_description": a.answer_hint(lang), "order": a.order, "description": a.question(lang),
         "values": [{"key": v.key, "name": v.name(lang)} for v in a.values]}
        for a in sorted(s.attributes, key=lambda a: a.order)]}


def request_json(doc: dict[str, Any], *, extensions: bool = False) -> dict[str, Any]:
    loc = doc.get("location") or {}
    out: dict[str, Any] = {
        "service_request_id": doc["_id"], "status": open311_status(doc["status"]),
        "status_notes": doc.get("status_notes"), "service_name": doc.get("service_name"),
        "service_code": doc.get("service_code"), "description": doc.get("description"),
        "agency_responsible": doc.get("agency_responsible"),
        "service_notice": (doc.get("answer") or {}).get("message"),
        "requested_datetime": doc.get("received_at"), "updated_datetime": doc.get("updated_at"),
        "expected_datetime": doc.get("expected_at"), "address": loc.get("address_text"),
        "address_id": loc.get("building_id"), "zipcode": None, "lat": loc.get("lat"), "long": loc.get("lon"),
        "media_url": doc.get("media_url"),
    }
    if extensions:
        out["extended_attributes"] = {"civicgrid_status": doc["status"], "duplicate_of": doc.get("duplicate_of"),
                                      "followers": doc.get("followers", 1), "channel": doc.get("channel")}
        out["notes"] = [{"datetime": h.get("at"), "type": h.get("type"), "status": h.get("status"),
                         "summary": h.get("note"), "description": h.get("note")} for h in doc.get("history", [])]
    return out


# ----------------------------------------------------------------------------- endpoints


def _jurisdiction(request: Request, fmt: str, value: str | None = None) -> None:
    j = value if value is not None else request.query_params.get("jurisdiction_id")
    if j and j != request.app.state.settings.jurisdiction_id:
        raise Open311Error(404, f"jurisdiction_id {j!r} not served here", fmt)


@router.get("/discovery.{fmt}", summary="Open311 discovery")
async def discovery(fmt: str, request: Request) -> Response:
    fmt = _check_fmt(fmt)
    base = request.app.state.settings.public_base_url or str(request.base_url).rstrip("/")
    changeset = _dt(datetime(2026, 11, 28, tzinfo=UTC))
    data = {"changeset": changeset, "contact": "civicgrid street office, 12345 hotline",
            "key_service": f"{base}/api/v1 (ask the street office for an Open311 api_key)",
            "endpoints": [{"specification": SPEC_URL, "url": f"{base}/open311/v2", "changeset": changeset,
                           "type": "production", "formats": ["text/xml", "application/json"]}]}
    return render(data, fmt, root="discovery")


LANGUAGE_CHOICE = ("Names (service list) and questions (service definition) in Chinese or English: the `locale` "
                   "parameter (`zh`, `zh-CN`, `en`...) or else the `Accept-Language` header; English when neither "
                   "asks for Chinese.")
LocaleParam = Query(None, description="zh or en (as a language tag); wins over Accept-Language")


@router.get("/services.{fmt}", summary="Open311 service list", description=LANGUAGE_CHOICE)
async def services(fmt: str, request: Request, locale: str | None = LocaleParam) -> Response:
    fmt = _check_fmt(fmt)
    _jurisdiction(request, fmt)
    cat = request.app.state.service.catalogue
    lang = language_of(request)
    return render([service_json(s, lang) for s in cat.all()], fmt, root="services", item="service")


@router.get("/services/{service_code}.{fmt}", summary="Open311 service definition", description=LANGUAGE_CHOICE)
async def service_definition(service_code: str, fmt: str, request: Request,
                             locale: str | None = LocaleParam) -> Response:
    fmt = _check_fmt(fmt)
    _jurisdiction(request, fmt)
    s = request.app.state.service.catalogue.get(service_code)
    if s is None or not s.active:
        raise Open311Error(404, f"service_code {service_code!r} not found", fmt)
    return render(definition_json(s, language_of(request)), fmt, root="service_definition")


def _answers(form) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in form.multi_items():
        m = ATTR_RE.match(k)
        if not m:
            continue
        code, is_list = m.group(1), bool(m.group(2))
        if is_list:
            out.setdefault(code, [])
            if isinstance(out[code], list):
                out[code].append(v)
        else:
            out[code] = v
    return out


def _field_errors(exc: ValidationError, prefix: str | None = None) -> str:
    parts = []
    for e in exc.errors():
        loc = ([prefix] if prefix else []) + [str(p) for p in e["loc"]]
        name = {"location/lat": "lat", "location/lon": "long", "location/address_text": "address_string",
                "location/building_id": "address_id", "location": "lat/long, address_string or address_id",
                "contact/email": "email", "contact/phone": "phone", "contact/name": "first_name/last_name"}.get(
            "/".join(loc), "/".join(loc))
        parts.append(f"{name}: {e['msg']}")
    return "; ".join(parts)


@router.post("/requests.{fmt}", status_code=201, summary="Open311: create a service request (form-encoded)",
             dependencies=[Depends(limit_open311_submissions)])
async def post_request(fmt: str, request: Request) -> Response:
    fmt = _check_fmt(fmt)
    form = await request.form()
    _jurisdiction(request, fmt, form.get("jurisdiction_id"))
    h = request.app.state.service.handlers
    key = form.get("api_key")
    if not key:
        raise Open311Error(403, "api_key is required", fmt)
    if not await h.check_api_key(str(key)):
        raise Open311Error(403, "api_key is not valid", fmt)
    code = form.get("service_code")
    if not code:
        raise Open311Error(400, "service_code is required", fmt)
    svc = request.app.state.service.catalogue.get(str(code))
    if svc is None or not svc.active:
        raise Open311Error(400, f"service_code {code!r} not found", fmt)
    lat, lon = form.get("lat"), form.get("long")
    try:
        latf = float(lat) if lat not in (None, "") else None
        lonf = float(lon) if lon not in (None, "") else None
    except ValueError:
        raise Open311Error(400, "lat/long must be numbers (WGS 84 decimal degrees)", fmt) from None
    name = " ".join(str(x) for x in (form.get("first_name"), form.get("last_name")) if x) or None
    contact = {k: v for k, v in (("name", name), ("phone", form.get("phone") or None),
                                 ("email", form.get("email") or None)) if v}
    try:
        location = LocationIn(lat=latf, lon=lonf, building_id=form.get("address_id") or None,
                              address_text=form.get("address_string") or None)
    except ValidationError as exc:
        problems = [e for e in exc.errors() if e["loc"]]
        raise Open311Error(400, _field_errors(exc, prefix="location") if problems else
                           "a location is required: lat and long, address_string or address_id", fmt) from None
    try:
        cmd = SubmitRequest(
            service_code=str(code),
            location=location,
            description=str(form.get("description") or ""), attributes=_answers(form), channel="open311",
            media_url=form.get("media_url") or None, contact=ContactIn(**contact) if contact else None,
            device_id=form.get("device_id") or None, account_id=form.get("account_id") or None)
    except ValidationError as exc:
        raise Open311Error(400, _field_errors(exc), fmt) from None
    try:
        res = await h.submit(cmd, idempotency_key=request.headers.get("idempotency-key"))
    except IntakeError as exc:
        if exc.status in (404, 409):
            raise Open311Error(409 if exc.status == 409 else 404, exc.detail, fmt) from None
        raise Open311Error(400, exc.detail, fmt) from None
    return render([{"service_request_id": res.request_id, "token": res.token,
                    "service_notice": res.answer.get("message"), "account_id": cmd.account_id}],
                  fmt, root="service_requests", item="request", status=201)


@router.get("/requests.{fmt}", summary="Open311: query service requests", dependencies=[Depends(limit_reads)])
async def get_requests(fmt: str, request: Request) -> Response:
    fmt = _check_fmt(fmt)
    q = request.query_params
    _jurisdiction(request, fmt)
    h = request.app.state.service.handlers
    extensions = q.get("extensions", "").lower() == "true"
    try:
        page = int(q.get("page") or 1)
        page_size = int(q.get("page_size") or MAX_ROWS)
    except ValueError:
        raise Open311Error(400, "page and page_size must be integers", fmt) from None
    if page < 1 or not 1 <= page_size <= MAX_ROWS:
        raise Open311Error(400, f"page must be >= 1 and page_size between 1 and {MAX_ROWS}", fmt)
    skip = (page - 1) * page_size
    ids = [i.strip() for i in (q.get("service_request_id") or "").split(",") if i.strip()]
    if ids:  # overrides every other parameter
        docs = await h.search(ids=ids, skip=skip, limit=page_size)
        return render([request_json(d, extensions=extensions) for d in docs], fmt, root="service_requests",
                      item="request")
    end = _parse_dt(q.get("end_date"), "end_date", fmt)
    start = _parse_dt(q.get("start_date"), "start_date", fmt)
    if start and end and end - start > MAX_SPAN:
        raise Open311Error(400, "start_date and end_date may be at most 90 days apart", fmt)
    if start and end and end < start:
        raise Open311Error(400, "end_date is before start_date", fmt)
    if end is None:
        end = (start + MAX_SPAN) if start else datetime.now(UTC) + timedelta(seconds=1)
    if start is None:
        start = end - MAX_SPAN
    statuses: list[str] | None = None
    if q.get("status"):
        wanted = {s.strip() for s in q["status"].split(",") if s.strip()}
        if not wanted <= {"open", "closed"}:
            raise Open311Error(400, "status must be open and/or closed", fmt)
        statuses = sorted((OPEN_STATUSES if "open" in wanted else set()) | (OPEN311_CLOSED if "closed" in wanted
                                                                            else set()))
    codes = [c.strip() for c in (q.get("service_code") or "").split(",") if c.strip()] or None
    docs = await h.search(statuses=statuses, service_codes=codes, start=start, end=end, skip=skip, limit=page_size)
    return render([request_json(d, extensions=extensions) for d in docs], fmt, root="service_requests",
                  item="request")


@router.get("/requests/{request_id}.{fmt}", summary="Open311: one service request",
            dependencies=[Depends(limit_reads)])
async def get_request(request_id: str, fmt: str, request: Request) -> Response:
    fmt = _check_fmt(fmt)
    _jurisdiction(request, fmt)
    h = request.app.state.service.handlers
    docs = await h.search(ids=[request_id])
    if not docs:
        raise Open311Error(404, f"service_request_id {request_id!r} not found", fmt)
    ext = request.query_params.get("extensions", "").lower() == "true"
    return render([request_json(docs[0], extensions=ext)], fmt, root="service_requests", item="request")


@router.get("/tokens/{token}.{fmt}", summary="Open311: service request id from a token",
            dependencies=[Depends(limit_reads)])
async def token(token: str, fmt: str, request: Request) -> Response:
    fmt = _check_fmt(fmt)
    h = request.app.state.service.handlers
    try:
        doc = await h.by_token(token)
    except IntakeError:
        raise Open311Error(404, "token not found", fmt) from None
    return render([{"service_request_id": doc["_id"], "token": token}], fmt, root="service_requests",
                  item="request")
