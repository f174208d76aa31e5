"""Administrator pages: catalogue editor, map import (defects on the map), versions and
activation, departments, working calendar (pending its API). The roster is pages/roster.py."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Request, UploadFile

from civicgrid_console.adapters.api import ApiError
from civicgrid_console.domain import i18n
from civicgrid_console.domain.session import Session
from civicgrid_console.entrypoints.web import PageProblem, act, api_message, console_of, need, render
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
    services = await admin.catalogue(console_of(request).apis)
    return render(request, "admin_catalogue.html", services=services, edit=edit)


@router.post("/catalogue/{code}")
async def update_service(request: Request, code: str, s: Session = Admin):
    form = await request.form()
    try:
        action = admin.update_service(console_of(request).apis, s.token, code, form)
        return await act(request, action, back="/admin/catalogue", ok=i18n.t(s.lang, "admin.saved"))
    except ValueError:
        raise PageProblem(422, "error.invalid_form") from None


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
    return render(request, "admin_calendar.html")
