"""After a realistic flow on the real stack, one stored document of each of grid's collections:
every field plain BSON (no binary blob) and a ``schema_version`` on every document: the map's
geometry too (one document per area and per building, polygons as WKT text, docs/adr/0802)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from bson import Binary

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.catalogue import ServiceDefined
from civicgrid_contracts.values import TimeLimits

pytestmark = [pytest.mark.infra, pytest.mark.asyncio(loop_scope="session")]

#: the collections grid writes (the runtime's outbox markers are transient and not grid's)
GRID_COLLECTIONS = ("requests", "staff", "posts", "chain", "departments", "services", "map_versions", "map_meta",
                    "map_areas", "map_buildings")


def binary_fields(value, path: str = "") -> list[str]:
    if isinstance(value, bytes | Binary):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in binary_fields(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for v in value for p in binary_fields(v, f"{path}[]")]
    return []


async def test_every_grid_collection_holds_plain_versioned_documents(harness):
    g = harness.grid(11)
    defined = Envelope.wrap(ServiceDefined(
        request_id="stall", service_code="stall", name_zh="占道经营", name_en="Street stall", group="order",
        handled_by=("grid", "department"), departments=("chengguan",), revision=1, changed_at=datetime.now(UTC),
        time_limits=TimeLimits(response_hours=2, resolution_hours=48, report_back_hours=24)), source="/intake")
    await harness.publisher.publish_many([defined])  # the catalogue topic, as intake publishes it
    env = harness.received(g, service_code="stall", handled_by=("grid", "department"), departments=("chengguan",))
    await harness.publish(env)
    a = (await harness.assigned(env)).data
    worker = harness.token(a.assignee_id, "grid_worker", g)
    rid = env.subject
    for path, body in (("accept", None), ("notes", {"note": "on my way"})):
        r = await harness.http.post(f"/v1/requests/{rid}/{path}", headers=worker, json=body)
        assert r.status_code == 200, r.text
    db = harness.svc.runtime.db
    await harness.collector.wait_for(rid, "civicgrid.request.noted")
    for _ in range(100):  # the catalogue consumer runs beside the requests consumer
        if await db["services"].find_one({"_id": "stall"}):
            break
        await asyncio.sleep(0.1)
    dumped = {}
    for name in GRID_COLLECTIONS:
        doc = await db[name].find_one({"_id": rid} if name == "requests" else {})
        assert doc is not None, f"no {name} document after the flow"
        assert doc.get("schema_version"), f"{name} document without schema_version: {doc}"
        assert binary_fields(doc) == [], f"{name} has binary fields {binary_fields(doc)}"
        dumped[name] = doc
    req = dumped["requests"]
    assert req["schema_version"] == 2 and req["version"] >= 3 and "received" not in req
    assert req["due_response"] == env.data.response_due.replace(microsecond=req["due_response"].microsecond)
    assert req["location"]["lat"] == env.data.location.lat and req["notes"][0]["note"] == "on my way"
    assert all(isinstance(e, dict) for e in req.get("_caused", []))
    assert "map_chunks" not in await db.list_collection_names()
    area, building = dumped["map_areas"], dumped["map_buildings"]
    assert area["wkt"].startswith(("POLYGON", "MULTIPOLYGON")) and area["map_version"] == req["map_version"]
    assert isinstance(building["code"], str) and isinstance(building["lon"], float)
