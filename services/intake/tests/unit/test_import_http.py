"""The import API over the in-memory fakes: bad input comes out as problem details naming the
field, a caller who is not an administrator is refused (no infrastructure; the real stack's
version is tests/e2e/test_imported_backlog.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from intake_test_helpers import BASE_LAT, BASE_LON, handlers_on_fakes

from civicgrid_intake.entrypoints.http import imports_router, install_error_handlers
from civicgrid_runtime.auth import mint_token
from civicgrid_runtime.problems import install_problem_handlers

SECRET = "unit-test-secret-of-enough-length-0123456789"
PATH = "/api/v1/imports/requests"
T0 = datetime.now(UTC)


def token(role: str, sub: str = "someone") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(secret=SECRET, sub=sub, role=role)}"}


ADMIN = token("admin", "admin-1")


def item(ref: str, *, hours_ago: float = 26, **over) -> dict:
    return {"external_ref": ref, "received_at": (T0 - timedelta(hours=hours_ago)).isoformat(),
            "service_code": "greening", "location": {"lat": BASE_LAT, "lon": BASE_LON},
            "description": "Fallen branch", **over}


@pytest.fixture
async def http():
    app = FastAPI()
    app.state.service = SimpleNamespace(handlers=handlers_on_fakes())
    app.state.auth_secret = SECRET
    install_problem_handlers(app)
    install_error_handlers(app)
    app.include_router(imports_router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
        yield client


def problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


async def test_a_received_time_in_the_future_is_refused_naming_the_item(http):
    body = {"system": "hotline", "items": [item("A"), item("B", hours_ago=-3)]}
    p = problem(await http.post(PATH, json=body, headers=ADMIN), 422)
    assert [e["field"] for e in p["errors"]] == ["items/1/received_at"] and "future" in p["errors"][0]["message"]
    r = await http.post(PATH, json={"system": "hotline", "items": [item("A")]}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["imported"] == 1  # nothing of the refused batch was imported


async def test_a_reference_twice_or_reused_with_other_content_is_refused(http):
    p = problem(await http.post(PATH, json={"system": "hotline", "items": [item("A"), item("A")]}, headers=ADMIN), 422)
    assert [e["field"] for e in p["errors"]] == ["items/1/external_ref"]
    r = await http.post(PATH, json={"system": "hotline", "items": [item("A")]}, headers=ADMIN)
    assert r.status_code == 200, r.text
    again = await http.post(PATH, json={"system": "hotline", "items": [item("A")]}, headers=ADMIN)
    assert again.json()["items"][0]["status"] == "already_imported"
    assert again.json()["items"][0]["request_id"] == r.json()["items"][0]["request_id"]
    p = problem(await http.post(PATH, json={"system": "hotline", "items": [item("A", description="other")]},
                                headers=ADMIN), 409)
    assert [e["field"] for e in p["errors"]] == ["items/0/external_ref"]


async def test_only_an_administrator_imports(http):
    body = {"system": "hotline", "items": [item("A")]}
    for role in ("operator", "supervisor", "grid_worker", "auditor"):
        problem(await http.post(PATH, json=body, headers=token(role)), 403)
    problem(await http.post(PATH, json=body), 401)


async def test_malformed_items_are_refused_by_field(http):
    p = problem(await http.post(PATH, json={"system": "hotline", "items": [item("A", received_at="yesterday")]},
                                headers=ADMIN), 422)
    assert [e["field"] for e in p["errors"]] == ["items/0/received_at"]
    p = problem(await http.post(PATH, json={"system": "Hot Line", "items": []}, headers=ADMIN), 422)
    assert {e["field"] for e in p["errors"]} == {"system", "items"}
    p = problem(await http.post(PATH, json={"system": "hotline", "items": [item(str(i)) for i in range(101)]},
                                headers=ADMIN), 422)
    assert [e["field"] for e in p["errors"]] == ["items"]
    p = problem(await http.post(PATH, json={"system": "hotline", "items": [item("A", service_code="gone")]},
                                headers=ADMIN), 422)
    assert [e["field"] for e in p["errors"]] == ["items/0/service_code"]
