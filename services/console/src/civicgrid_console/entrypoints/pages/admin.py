"""Administrator pages: catalogue editor (time limits, handlers, attributes), map import (defects on
the map), versions and activation, departments (read-only: grid has no API to edit them), the
working calendar (month grids; define or edit a year). The roster is pages/roster.py.

A refused form comes back as it was typed, with each problem next to the field it is about."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Path, Query, Request, UploadFile
from fastapi.responses import RedirectResponse

from civicgrid_console.adapters.api import ApiError
from civicgrid_console.domain import calendar as cal
from civicgrid_console.domain import catalogue as cat
from civicgrid_console.domain import field_errors, i18n
from civicgrid_console.domain.forms import FormInvalid
from civicgrid_console.domain.session import Session
from civicgrid_console.entrypoints.web import act, api_message, console_of, need, render, session_of
from civicgrid_console.handlers import admin

router = APIRouter(prefix="/admin")
Admin = Depends(need("admin"))
#: largest map file the page takes (the demo district with its buildings is a few MB)
MAX_UPLOAD = 64 * 1024 * 1024


@router.get("")
async def admin_home(request: Request, s: Session = Admin):
    return render(request, "admin.html")


@router.get("/catalogue")
async def catalogue(request: Request, s: Session = Admin, edit: str = ""):
    apis = console_of(request).apis
    services = await admin.catalogue(apis)
    listed = next((x for x in services if x["code"] == edit), None)
    # the service as stored now (the list is a replica's copy): its revision is what a save is checked against
    editing = await admin.service(apis, edit) if listed else None
    return await catalogue_page(request, services, editing, cat.form_of(editing) if editing else None)


async def catalogue_page(request: Request, services, editing, form: cat.ServiceForm | None, status: int = 200,
                         errors: field_errors.FieldErrors | None = None):
    departments = await admin.departments(console_of(request).apis) if editing else []
    errors = errors or field_errors.FieldErrors()
    return render(request, "admin_catalogue.html", status, services=services, service=editing, form=form,
                  departments=departments, errors=errors, labels=cat.field_names(session_of(request).lang,
                                                                                 errors.by_field),
                  targets={}, datatypes=cat.DATATYPES, handlers=cat.HANDLERS, clocks=cat.CLOCKS)


@router.post("/catalogue/{code}")
async def update_service(request: Request, code: str, s: Session = Admin):
    apis = console_of(request).apis
    current = await admin.service(apis, code)
    typed = cat.posted(await request.form())
    status = 422
    try:
        body = cat.body_of(current, typed)
        await admin.update_service(apis, s.token, code, body.json, typed.revision)
    except FormInvalid as exc:
        errors = field_errors.local(s.lang, exc.errors)
    except ApiError as exc:
        if exc.status != 412:
            errors = refusal(s.lang, exc, body.field_of)
        else:  # someone else saved first: the form stays as typed, on the current revision, each difference shown
            current = await admin.service(apis, code)
            errors, typed.revision, status = service_conflict(s.lang, current, typed), str(current["revision"]), 409
    else:
        s.flash("ok", i18n.t(s.lang, "admin.saved"))
        return RedirectResponse(f"/admin/catalogue?edit={code}", status_code=303)
    return await catalogue_page(request, await admin.catalogue(apis), current, typed, status, errors)


def service_conflict(lang: str, current, typed: cat.ServiceForm) -> field_errors.FieldErrors:
    """The message of a save refused because the service changed since the form was loaded: on top,
    what happened; at each field where the form differs from the current version, its current value."""
    changed, missing = cat.differences(cat.form_of(current), typed)
    errors = field_errors.FieldErrors(general=[i18n.t(lang, "conflict.service", revision=current["revision"])])
    for fid, value in changed:
        errors.add(fid, i18n.t(lang, "conflict.current", value=value or i18n.t(lang, "conflict.empty")))
    for a in missing:
        question = i18n.simplified(a.description_zh or a.description_en) if lang == "zh" else \
            a.description_en or a.description_zh
        errors.add("attributes", i18n.t(lang, "conflict.only_current", code=a.code, question=question))
    return errors


def refusal(lang: str, exc: ApiError, field_of) -> field_errors.FieldErrors:
    """An API's refusal of a form: each field it names gets its error next to it (and a count on
    top); any other problem (no right, a conflict, a service away) is the message on top."""
    if exc.status in (400, 422) and exc.errors:
        errors = field_errors.place(lang, exc.errors, field_of)
        errors.general.insert(0, i18n.t(lang, "fielderr.summary", n=len(exc.errors)))
        return errors
    return field_errors.FieldErrors(general=[api_message(lang, exc)])


@router.get("/map")
async def map_page(request: Request, s: Session = Admin):
    return render(request, "admin_map.html", result=None, versions=await admin.versions(console_of(request).apis,
                                                                                          s.token))


@router.post("/map")
async def import_map(request: Request, file: UploadFile = File(...), s: Session = Admin):
    apis = console_of(request).apis
    raw = await file.read(MAX_UPLOAD + 1)
    result, error = None, None
    try:
        if len(raw) > MAX_UPLOAD:
            raise ValueError("file too large")
        result = await admin.import_map(apis, s.token, admin.parse_upload(raw))
    except ValueError as exc:
        error = f"{i18n.t(s.lang, 'error.invalid_form')} {exc}"
    except ApiError as exc:
        error = api_message(s.lang, exc)
    status = 422 if error or (result and result.get("defects")) else 200
    return render(request, "admin_map.html", status, result=result, error=error,
                  versions=await admin.versions(apis, s.token))


@router.post("/map/versions/{version}/activate")
async def activate(request: Request, version: int, s: Session = Admin):
    return await act(request, admin.activate(console_of(request).apis, s.token, version), back="/admin/map",
                     ok=i18n.t(s.lang, "admin.activated", v=version))


@router.get("/departments")
async def departments(request: Request, s: Session = Admin):
    return render(request, "admin_departments.html", departments=await admin.departments(console_of(request).apis))


@router.get("/calendar")
async def calendar(request: Request, s: Session = Admin):
    return render(request, "admin_calendar.html", years=await admin.calendar_years(console_of(request).apis))


Year = Annotated[int, Path(ge=2000, le=2200)]


@router.get("/calendar/define")
async def define_calendar_year(request: Request, year: int = Query(ge=2000, le=2200), s: Session = Admin):
    """The list page's "define a year" field: on to that year's form."""
    return RedirectResponse(f"/admin/calendar/{year}/edit", status_code=303)


@router.get("/calendar/{year}")
async def calendar_year(request: Request, year: Year, s: Session = Admin):
    held = await admin.calendar_year(console_of(request).apis, year)
    grid = cal.months(held["calendar"])
    return render(request, "admin_calendar_year.html", year=year, held=held, c=held["calendar"], months=grid,
                  counts=cal.counts(grid), offset=cal.utc_offset(held["calendar"]["timezone"], year))


@router.get("/calendar/{year}/edit")
async def edit_calendar_year(request: Request, year: Year, s: Session = Admin):
    held = await admin.calendar_year(console_of(request).apis, year)
    return calendar_form(request, year, held, cal.form_of(held))


def calendar_form(request: Request, year: int, held, form: cal.CalendarForm, status: int = 200,
                  errors: field_errors.FieldErrors | None = None):
    errors = errors or field_errors.FieldErrors()
    labels, targets = cal.field_names(session_of(request).lang, errors.by_field)
    return render(request, "admin_calendar_edit.html", status, year=year, held=held, form=form, errors=errors,
                  labels=labels, targets=targets, weekdays=cal.WEEKDAYS)


@router.post("/calendar/{year}")
async def save_calendar_year(request: Request, year: Year, s: Session = Admin):
    apis = console_of(request).apis
    typed = cal.posted(await request.form())
    status = 422
    try:
        body = cal.body_of(typed)
        await admin.define_year(apis, s.token, year, body.json, typed.revision)
    except FormInvalid as exc:
        errors = field_errors.local(s.lang, exc.errors)
    except ApiError as exc:
        if exc.status != 412:
            errors = refusal(s.lang, exc, body.field_of)
        else:  # someone else saved first: the form stays as typed, on the current revision, each difference shown
            held = await admin.calendar_year(apis, year)
            errors, typed.revision, status = year_conflict(s.lang, year, held, typed), str(held["revision"]), 409
    else:
        s.flash("ok", i18n.t(s.lang, "cal.saved", year=year))
        return RedirectResponse(f"/admin/calendar/{year}", status_code=303)
    return calendar_form(request, year, await admin.calendar_year(apis, year), typed, status, errors)


def year_conflict(lang: str, year: int, held, typed: cal.CalendarForm) -> field_errors.FieldErrors:
    """As ``service_conflict``, for a year of the working calendar."""
    errors = field_errors.FieldErrors(general=[i18n.t(lang, "conflict.year", year=year, revision=held["revision"])])
    for fid, value in cal.differences(cal.form_of(held), typed):
        errors.add(fid, i18n.t(lang, "conflict.current", value=value or i18n.t(lang, "conflict.empty")))
    return errors
