"""Every HTTP request leaves one log line with its route template, status and time, and a request
id that every line of that request carries and the response names (civicgrid_runtime.accesslog)."""

from __future__ import annotations

import httpx
import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from civicgrid_runtime import ServiceSettings, create_app
from civicgrid_runtime.logging import get_logger


@pytest.fixture
async def client():
    settings = ServiceSettings(service_name="logged", max_body_bytes=2048)

    async def never():  # the lifespan is not run: these routes need no runtime
        raise AssertionError

    app = create_app(title="l", version="1", description="l", runtime_factory=never, settings=settings)

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict:
        get_logger("test").info("looking", thing=thing_id)
        return {"id": thing_id}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def test_one_line_per_request_names_the_route_template_not_the_path(client):
    with capture_logs() as logs:
        r = await client.get("/v1/things/secret-token-123")
    assert r.status_code == 200
    [line] = [e for e in logs if e["event"] == "http request"]
    assert line["route"] == "/v1/things/{thing_id}" and line["method"] == "GET" and line["status"] == 200
    assert "secret-token-123" not in str(line) and line["duration_ms"] >= 0


async def test_the_request_id_is_on_every_line_of_the_request_and_in_the_response(client):
    with capture_logs(processors=[merge_contextvars]) as logs:
        r = await client.get("/v1/things/a")
    rid = r.headers["x-request-id"]
    assert len(rid) == 32
    assert {e["http_request_id"] for e in logs} == {rid}
    assert [e["event"] for e in logs] == ["looking", "http request"]


async def test_a_plausible_request_id_from_the_caller_is_kept_and_an_odd_one_replaced(client):
    r = await client.get("/v1/things/a", headers={"X-Request-ID": "console-7f3a9c21"})
    assert r.headers["x-request-id"] == "console-7f3a9c21"
    r = await client.get("/v1/things/a", headers={"X-Request-ID": "<script>"})
    assert r.headers["x-request-id"] != "<script>" and len(r.headers["x-request-id"]) == 32


async def test_a_refused_request_is_logged_with_its_status_and_probes_are_not(client):
    with capture_logs() as logs:
        await client.post("/v1/things/a", content=b"x" * 5000, headers={"content-type": "application/json"})
        await client.get("/health/live")
        await client.get("/nowhere")
    lines = [(e["route"], e["status"]) for e in logs if e["event"] == "http request"]
    assert lines == [("unmatched", 413), ("unmatched", 404)]
