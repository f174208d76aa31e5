"""After a realistic flow, every audit collection holds plain documents (no binary anywhere) that
carry ``schema_version``, and an operator's questions are answered from named, indexed fields:
the audit-log record of an event with its hash-chain link and Merkle leaf, the escalated requests
of an area. Documents of an older shape are still listed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from civicgrid_audit.adapters.documents import CURRENT, family
from civicgrid_contracts import Envelope
from civicgrid_contracts.events.catalogue import ServiceDefined
from civicgrid_contracts.values import TimeLimits
from civicgrid_runtime.store import pack_json
from civicgrid_runtime.testing import unique

from .conftest import eventually, settle, start_audit
from .test_escalation import received
from .test_timeline import lifecycle

AUDIT_COLLECTIONS = {"requests_00", "kpi_counters", "services", "log_records", "log_heads", "checkpoints",
                     "escalation_claims", "migrations"}


def binary_fields(value, path: str = "") -> list[str]:
    """The paths of every binary value in ``value`` (what no operator can read with mongosh)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in binary_fields(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in binary_fields(v, f"{path}[{i}]")]
    return []


async def test_every_collection_holds_plain_versioned_documents_after_a_realistic_flow(infra, mongo):
    db_name = unique("audit_docs")
    svc = await start_audit(infra, database=db_name, group=unique("audit_grp"), repeat_hours=1000)
    try:
        await settle(svc)
        p = unique("DOC")
        late = unique("LATE")
        code = unique("S")
        service = ServiceDefined(request_id=code, service_code=code, name_zh="维修", name_en="repair", group="repair",
                                 handled_by=("grid",), time_limits=TimeLimits(response_hours=2, resolution_hours=24),
                                 revision=1, changed_at=datetime.now(UTC))
        events = lifecycle(p, datetime.now(UTC) - timedelta(hours=8))  # received, ..., rated and closed
        await svc.runtime.publisher.publish_many([*events, *received(late), Envelope.wrap(
            service, source="/civicgrid/intake")])
        db = svc.runtime.db

        async def escalated_by_the_scanner():  # claimed, published, and folded back into the request
            return await db["requests_00"].find_one({"_id": late, "escalation_count": {"$gte": 1}})

        await eventually(escalated_by_the_scanner, timeout=90)
        await eventually(lambda: db["services"].find_one({"_id": service.service_code}), timeout=90)
        await eventually(lambda: db["requests_00"].find_one({"_id": p, "status": "closed"}), timeout=90)
        await svc.log.checkpoint()
        names = set(await db.list_collection_names())
        assert AUDIT_COLLECTIONS <= names, AUDIT_COLLECTIONS - names
        for name in sorted(names):
            doc = await db[name].find_one({})
            if doc is None:
                continue  # a collection emptied as it works (the outbox's markers)
            assert binary_fields(doc) == [], f"{name} holds binary fields {binary_fields(doc)}: {doc}"
            assert doc.get("schema_version") == CURRENT.get(family(name), 1), f"{name}: {doc}"

        # the operator's questions, with mongosh alone: an event's audit-log record ...
        record = await db["log_records"].find_one({"event_id": events[0].id})
        assert {"log", "seq", "offset", "event_id", "prev", "chain", "leaf", "raw"} <= set(record)
        if record["seq"] > 0:
            before = await db["log_records"].find_one({"log": record["log"], "seq": record["seq"] - 1})
            assert record["prev"] == before["chain"]
        indexes = {i["name"]: i["key"] async for i in await db["log_records"].list_indexes()}
        assert list(indexes["event_id"]) == ["event_id"]
        # ... and the escalated open requests of an area, from the request's plain summary fields
        doc = await db["requests_00"].find_one({"_id": late})
        assert doc["late_since"] <= datetime.now(UTC) and doc["escalated_to"] and doc["open"]
        assert "escalated" in {i["name"] async for i in await db["requests_00"].list_indexes()}
        area = doc["area_code"][:6]  # (another platform on the shared topics may have reassigned it)
        assert any(r["request_id"] == late for r in await svc.queries.escalated(area, limit=1000))
        # ... the open requests of a grid past their deadline, from the clocks kept in the request ...
        past = await db["requests_00"].find({"area_code": doc["area_code"], "deadline": {"$lt": datetime.now(UTC)}},
                                            {"_id": 1}).to_list(None)
        assert late in {d["_id"] for d in past}
        assert "area_deadline" in {i["name"] async for i in await db["requests_00"].list_indexes()}
        assert "deadlines" not in names, "a request's clocks are in its own document"
        # ... and the escalation decided, with the event it published, in its claim
        claim = await db["escalation_claims"].find_one({"_id": f"{late}|response|1"})
        assert claim["done"] and claim["_caused"][0]["data"]["escalation_id"] == f"{late}|response|1"
    finally:
        await svc.runtime.stop()
        await mongo.drop_database(db_name)


async def test_the_escalated_list_still_shows_requests_stored_in_an_older_shape(infra, mongo):
    """A request written before versions (its state packed, no summary fields) is rewritten in
    today's shape when audit starts (adapters/upgrade.py) and listed beside today's documents."""
    state = {"status": "assigned", "area_code": "110105009001001", "escalations": [
        {"escalation_id": "OLD|response|1", "clock": "response", "step": 1, "from_level": "grid",
         "to_level": "community", "due_at": (datetime.now(UTC) - timedelta(hours=3)).isoformat(),
         "escalated_at": datetime.now(UTC).isoformat(), "department": None, "overdue_hours": 3.0}]}
    rid = unique("OLD")
    db_name = unique("audit_old")
    await mongo[db_name]["requests_00"].insert_one({
        "_id": rid, "status": "assigned", "area_code": state["area_code"], "open": True, "escalation_count": 1,
        "_body": pack_json({"timeline": [], "_kc": {}}), "_state": pack_json(state), "_kp": {}, "_v": 1, "_w": "w"})
    svc = await start_audit(infra, database=db_name, group=unique("audit_grp"), scan=False)
    try:
        rows = await svc.queries.escalated("110105009")
        assert [(r["request_id"], r["level"], r["last_clock"], round(r["late_hours"])) for r in rows] == [
            (rid, "community", "response", 3)]
        assert (await mongo[db_name]["requests_00"].find_one({"_id": rid}))["schema_version"] == CURRENT["requests"]
    finally:
        await svc.runtime.stop()
        await mongo.drop_database(db_name)
