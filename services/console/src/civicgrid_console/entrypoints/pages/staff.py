"""Grid worker (phone-sized queue and request page) and department (dispatches) pages."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request

from civicgrid_console.domain import i18n
from civicgrid_console.domain.roster import my_post_text
from civicgrid_console.domain.session import Session
from civicgrid_console.entrypoints.web import (
    PageProblem,
    act,
    api_message,
    console_of,
    live_page,
    need,
    now,
    render,
)
from civicgrid_console.handlers import roster, staff

router = APIRouter()
Worker = Depends(need("grid_worker", "supervisor"))


@live_page(router, "/work")
async def my_queue(request: Request, s: Session = Worker, staff_id: str = ""):
    apis = console_of(request).apis
    rows = await staff.queue(apis, s.token, now(), staff_id or None)
    post = await staff.my_post(apis, s.token, s.sub) if s.role == "grid_worker" else None
    posts = await roster.my_posts(apis, s.token, s.sub) if post else []
    return render(request, "queue.html", rows=rows, post=post, posts=posts, now=now(), staff_id=staff_id,
                  my_post=lambda p: my_post_text(s.lang, p))


@router.get("/work/{rid}")
async def request_page(request: Request, rid: str, s: Session = Worker):
    apis = console_of(request).apis
    detail = await staff.request_detail(apis, s.token, rid)
    return render(request, "work.html", rid=rid, **detail, departments=await staff.departments(apis))


@router.post("/work/{rid}/{action}")
async def request_action(request: Request, rid: str, action: str, s: Session = Worker):
    if action not in staff.ACTIONS:
        raise PageProblem(404, "error.not_found")
    form = await request.form()
    try:
        body = staff.action_body(action, form)
    except ValueError:
        raise PageProblem(422, "error.invalid_form") from None
    back = "/work" if action in ("resolve", "reject", "transfer", "reassign") else f"/work/{rid}"
    return await act(request, staff.act(console_of(request).apis, s.token, rid, action, body), back=back,
                     ok=i18n.t(s.lang, "work.done", action=i18n.t(s.lang, ACTION_LABEL[action])))


ACTION_LABEL = {"accept": "work.accept", "notes": "work.add_note", "volunteers": "work.volunteers",
                "whistle": "work.whistle", "transfer": "work.transfer", "resolve": "work.resolve",
                "reject": "work.reject", "reassign": "work.reassign"}


@live_page(router, "/dispatches")
async def dispatches(request: Request, s: Session = Depends(need("department"))):
    items, problems = await staff.dispatches(console_of(request).apis, s.token, s.sub, now())
    return render(request, "dispatches.html", items=items,
                  problems=[api_message(s.lang, exc) for exc in problems])


@router.post("/dispatches/{rid}/{dispatch_id}/{step}")
async def dispatch_step(request: Request, rid: str, dispatch_id: str, step: str, outcome: str = Form(""),
                        s: Session = Depends(need("department"))):
    if step not in ("acknowledge", "report"):
        raise PageProblem(404, "error.not_found")
    label = "dept.acknowledge" if step == "acknowledge" else "dept.report"
    return await act(request, staff.dispatch_act(console_of(request).apis, s.token, rid, dispatch_id, step, outcome),
                     back="/dispatches", ok=i18n.t(s.lang, "work.done", action=i18n.t(s.lang, label)))
