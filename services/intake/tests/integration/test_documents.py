"""What intake stores, as an operator sees it with mongosh: after a realistic flow, one document of
every collection, each field plain (no binary blob anywhere) and a ``schema_version`` on each; and
the store writes one accepted submission costs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from bson import Binary
from intake_test_helpers import API_KEY, body
from pymongo import AsyncMongoClient, monitoring

from civicgrid_contracts.calendar import OFFICIAL_2026, CalendarYear
from civicgrid_contracts.events.grid import RequestResolved
from civicgrid_intake.adapters import documents
from civicgrid_runtime.testing import eventually, unique

pytestmark = pytest.mark.infra


def blobs(value: Any, path: str = "") -> list[str]:
    """The paths of binary values inside ``value`` (none may be stored)."""
    if isinstance(value, bytes | Binary):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in blobs(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in blobs(v, f"{path}[{i}]")]
    return []


async def test_every_collection_holds_plain_versioned_documents_after_a_realistic_flow(ctx):
    resident = {"name": "Sun Li", "phone": "13500001111"}
    b = body("sanitation", contact=resident)
    created = (await ctx.client.post("/api/v1/requests", json=b)).json()
    rid = created["request_id"]
    r = await ctx.client.post("/open311/v2/requests.json", data={
        "api_key": API_KEY, "service_code": "sanitation", "lat": str(b["location"]["lat"] + 0.0001),
        "long": str(b["location"]["lon"]), "attribute[waste_type]": "household", "description": "same bins"})
    assert r.status_code == 201, r.text
    dup = r.json()[0]["service_request_id"]
    assert (await ctx.client.post(f"/api/v1/requests/{dup}/unmerge", json={"reason": "other bins"},
                                  headers=ctx.token("operator"))).status_code == 200
    assert (await ctx.client.get(f"/api/v1/requests/{rid}/contact", params={"reason": "calling back"},
                                  headers=ctx.token("operator"))).status_code == 200
    await ctx.publish(RequestResolved(request_id=rid, staff_id="s-1", resolution_note="Emptied",
                                      resolved_at=datetime.now(UTC)))
    tok = {"X-Request-Token": created["token"]}

    async def resolved():
        return (await ctx.client.get(f"/api/v1/requests/{rid}", headers=tok)).json()["status"] == "resolved"

    await eventually(resolved)
    assert (await ctx.client.post(f"/api/v1/requests/{rid}/rating", json={"rating": "unsatisfied"},
                                  headers=tok)).status_code == 200
    await ctx.service.calendar_years.set_year(CalendarYear(year=2031, periods=OFFICIAL_2026.periods), by="test")

    async def published():
        return await ctx.db["requests"].count_documents({"_outbox_pending": True}) == 0

    await eventually(published)
    names = set(await ctx.db.list_collection_names())
    assert {"requests", "services", "calendar_years", "open311_api_keys", "staff_access"} <= names
    assert "outbox_markers" not in names  # intake's own relay is gone
    for name in sorted(names):
        docs = await ctx.db[name].find({}).limit(200).to_list(None)
        for doc in docs:
            assert doc.get("schema_version") == documents.CURRENT.get(name, 1), (name, doc)
            assert blobs(doc) == [], (name, blobs(doc))
    stored = await ctx.db["requests"].find_one({"_id": rid})
    assert stored["status"] == "reopened" and stored["contact_enc"] and stored["reopen_count"] == 1
    assert stored["history"][-1]["status"] == "reopened" and not stored.get("_outbox")
    print({name: sorted(await ctx.db[name].find_one({}) or {}) for name in sorted(names)})


class WriteCounter(monitoring.CommandListener):
    """Documents inserted or changed, as the store reports them (what a cluster's IOPS follow)."""

    def __init__(self) -> None:
        self.written = 0

    def started(self, event) -> None:
        pass

    def succeeded(self, event) -> None:
        if event.command_name in ("insert", "update", "findAndModify"):
            reply = event.reply
            n = reply.get("nModified", reply.get("n", 0)) if event.command_name != "findAndModify" else \
                int(bool(reply.get("value")))
            self.written += int(n)

    def failed(self, event) -> None:
        pass


async def test_an_accepted_submission_costs_two_store_writes(infra):
    """Insert (with its events in its outbox) and the outbox cleared after the publish: 2."""
    from intake_test_helpers import handlers_on_fakes

    from civicgrid_intake.adapters.repository import Collections, MongoRequests
    from civicgrid_intake.domain.commands import SubmitRequest
    from civicgrid_runtime.store import OutboxRelay

    class Publisher:
        async def publish_many(self, events) -> None:
            pass

    counter = WriteCounter()
    client = AsyncMongoClient(infra.mongodb, tz_aware=True, event_listeners=[counter])
    db = client[unique("intake_writes")]
    try:
        cols = Collections(db)
        relay = OutboxRelay(Publisher(), [cols.requests])
        h = handlers_on_fakes(duplicate_distance_m=0)
        h.requests = MongoRequests(cols.requests, relay)
        n = 20
        counter.written = 0
        for _ in range(n):
            await h.submit(SubmitRequest(**body()))

        async def cleared():
            return await cols.requests.count_documents({"_outbox_pending": True}) == 0

        await eventually(cleared)
        await relay.stop()
        assert counter.written / n <= 2.0, counter.written
    finally:
        await client.drop_database(db.name)
        await client.close()
