"""The protection every service wears (civicgrid_runtime.protection): body cap before parsing,
CORS for the console only, security headers on every answer, the docs page under its CSP."""

from __future__ import annotations

import httpx
import pytest
from pydantic import BaseModel

from civicgrid_runtime import ServiceSettings, create_app

CONSOLE = "http://console.example:8100"


class Body(BaseModel):
    text: str


@pytest.fixture
async def client():
    settings = ServiceSettings(service_name="prot", max_body_bytes=2048, console_origin=CONSOLE)

    async def never():  # the lifespan is not run: these routes need no runtime
        raise AssertionError

    app = create_app(title="p", version="1", description="p", runtime_factory=never, settings=settings)

    @app.post("/echo")
    async def echo(body: Body) -> dict:
        return {"n": len(body.text)}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def test_a_declared_oversize_body_is_refused_with_413_problem(client):
    r = await client.post("/echo", json={"text": "x" * 5000})
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "/problems/payload-too-large" and "2048" in r.json()["detail"]


async def test_a_streamed_oversize_body_is_refused_while_it_comes_in(client):
    sent = []

    async def chunks():
        for _ in range(100):  # 100 KiB offered; the cap stops reading after 2 KiB
            sent.append(1)
            yield b"x" * 1024

    r = await client.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["status"] == 413
    assert len(sent) < 100


async def test_a_small_streamed_body_still_reaches_the_route(client):
    async def chunks():
        yield b'{"text": '
        yield b'"abc"}'

    r = await client.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json() == {"n": 3}


@pytest.mark.parametrize("path", ["/echo", "/no-such-page", "/openapi.json"])
async def test_every_answer_carries_the_security_headers(client, path):
    r = await (client.post(path, json={"text": "a"}) if path == "/echo" else client.get(path))
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "strict-transport-security" not in r.headers  # plain HTTP


async def test_hsts_when_the_request_came_over_tls(client):
    r = await client.get("https://t/openapi.json")
    assert r.headers["strict-transport-security"].startswith("max-age=")


async def test_cors_lets_only_the_console_origin_in(client):
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    r = await client.options("/echo", headers={"Origin": CONSOLE, **pre})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == CONSOLE
    r = await client.options("/echo", headers={"Origin": "http://evil.example", **pre})
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
    r = await client.post("/echo", json={"text": "a"}, headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_the_docs_page_is_served_from_here_under_a_csp_that_names_its_script(client):
    r = await client.get("/docs")
    assert r.status_code == 200 and "SwaggerUIBundle" in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in csp and "unsafe-inline' ;" not in csp and "http" not in csp
    assert "frame-ancestors 'none'" in csp
    assert "//" not in r.text.split("<body>")[1]  # nothing loaded from another origin
    js = await client.get("/docs/static/swagger-ui-bundle.js")
    assert js.status_code == 200 and js.headers["x-content-type-options"] == "nosniff"
