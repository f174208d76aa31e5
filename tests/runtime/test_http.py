"""Settings, auth, problem details and health endpoints of the shared runtime."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from fastapi import Depends
from pydantic import BaseModel, Field, ValidationError

from civicgrid_runtime import Runtime, ServiceSettings, create_app
from civicgrid_runtime.auth import Principal, mint_token, require, require_area
from civicgrid_runtime.testing import unique

SECRET = "test-secret-that-is-long-enough-for-hs256!"


def test_bad_configuration_fails_loudly_naming_the_variable(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "not a server list")
    with pytest.raises(ValidationError, match="KAFKA_BOOTSTRAP_SERVERS"):
        ServiceSettings()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    monkeypatch.setenv("CIVICGRID_HTTP_PORT", "99999")
    with pytest.raises(ValidationError, match="http_port"):
        ServiceSettings()


@dataclass
class _Service:
    runtime: Runtime


class Body(BaseModel):
    count: int = Field(ge=1)
    name: str


def build_app(settings: ServiceSettings):
    async def factory():
        return _Service(await Runtime.open(settings))

    app = create_app(title="t", version="1", description="t", runtime_factory=factory, settings=settings)

    @app.post("/things")
    async def things(body: Body, p: Principal = Depends(require("supervisor"))):
        require_area(p, "110105001")
        return {"ok": True, "by": p.sub}

    return app


@pytest.fixture
async def client(infra):
    settings = ServiceSettings(service_name="httptest", database=unique("httptest"), auth_secret=SECRET)
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            yield c


def bearer(role: str, area: str = "") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(secret=SECRET, sub='u1', role=role, area=area)}"}


async def test_missing_and_wrong_tokens_get_401_and_403_with_problem_bodies(client):
    body = {"count": 1, "name": "x"}
    r = await client.post("/things", json=body)
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["title"] == "Authentication required"
    r = await client.post("/things", json=body, headers={"Authorization": "Bearer garbage"})
    assert r.status_code == 401 and "not valid" in r.json()["detail"]
    forged = mint_token(secret="another-secret-that-is-long-enough-for-hs256", sub="x", role="supervisor")
    r = await client.post("/things", json=body, headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    r = await client.post("/things", json=body, headers=bearer("volunteer"))
    assert r.status_code == 403 and "volunteer" in r.json()["detail"]
    r = await client.post("/things", json=body, headers=bearer("supervisor", area="110106"))
    assert r.status_code == 403 and r.json()["title"] == "Outside your area"
    r = await client.post("/things", json=body, headers=bearer("supervisor", area="110105"))
    assert r.status_code == 200 and r.json() == {"ok": True, "by": "u1"}


async def test_validation_errors_name_the_field(client):
    r = await client.post("/things", json={"count": 0}, headers=bearer("admin"))
    assert r.status_code == 422
    problem = r.json()
    assert problem["type"] == "/problems/validation-error"
    assert {e["field"] for e in problem["errors"]} == {"count", "name"}


async def test_health_live_ready_and_metrics(client):
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    r = await client.get("/health/ready")
    assert r.status_code == 200 and r.json()["store"] is True and r.json()["broker"] is True
    m = await client.get("/metrics")
    assert "civicgrid_events_published_total" in m.text
