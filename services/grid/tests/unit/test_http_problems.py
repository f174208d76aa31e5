"""The HTTP entrypoint over the in-memory fakes: the domain's refusals come out as problem details
naming the field (no infrastructure; the real stack's version is tests/integration/test_staff_api.py)."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
from fastapi import FastAPI

from civicgrid_grid.entrypoints.http import map_router, work_router
from civicgrid_grid.handlers import handle_requests
from civicgrid_runtime.auth import mint_token
from civicgrid_runtime.problems import install_problem_handlers

from .fakes import city, delivered, fake_grid, published, received

SECRET = "unit-test-secret-of-enough-length-0123456789"


async def client():
    ctx, commands = await fake_grid()
    app = FastAPI()
    app.state.service = SimpleNamespace(ctx=ctx, commands=commands)
    app.state.auth_secret = SECRET
    install_problem_handlers(app)
    app.include_router(map_router)
    app.include_router(work_router)
    return ctx, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://grid")


def token(sub: str, role: str, area: str = "") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(secret=SECRET, sub=sub, role=role, area=area)}"}


async def test_refusals_are_problem_details():
    ctx, http = await client()
    g = city().grids.codes[12]
    env = received(g)
    await handle_requests(ctx, delivered(env))
    holder = published(ctx, env.subject, "civicgrid.request.assigned")[0].data.assignee_id
    worker, rid = token(holder, "grid_worker", g), env.subject
    async with http:
        r = await http.post(f"/v1/requests/{rid}/whistle", headers=worker,
                            json={"departments": ["chengguan", "nobody"], "reason": "stall"})
        assert r.status_code == 422 and r.json()["errors"] == [{"field": "departments", "message": "unknown nobody"}]
        assert r.headers["content-type"].startswith("application/problem+json")
        r = await http.post(f"/v1/requests/{rid}/whistle", headers=worker,
                            json={"departments": ["chengguan", "housing"], "reason": "stall"})
        assert r.status_code == 200, r.text
        r = await http.post(f"/v1/requests/{rid}/resolve", headers=worker, json={"resolution_note": "done"})
        assert r.status_code == 409 and "Joint case" in r.json()["detail"]
        r = await http.post(f"/v1/requests/{rid}/reassign", headers=token("sup", "supervisor", g[:12]),
                            json={"to_staff": "nobody", "reason": "x"})
        assert r.status_code == 422 and r.json()["title"] == "Unknown staff member"
        r = await http.post("/v1/requests/req-unknown/accept", headers=worker)
        assert r.status_code == 404
        queue = (await http.get("/v1/queue", headers=worker)).json()
        assert [q["request_id"] for q in queue] == [rid]
        assert [q["request_id"] for q in (await http.get("/v1/queue", headers=token("housing", "department"))).json()] \
            == [rid]
