"""Tamper evidence: for each of alter, delete, insert and reorder on a stored audit record, verify
names the kind and the record; an intact log verifies, with its signed checkpoint."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from civicgrid_audit.adapters.auditlog import AuditLog, Signer, log_name, record_id
from civicgrid_audit.domain import merkle
from civicgrid_audit.settings import AuditSettings
from civicgrid_contracts import Envelope
from civicgrid_contracts.events.grid import RequestAccepted
from civicgrid_runtime.bus import Delivery

N = 10


@pytest.fixture
async def trail(fresh_db):
    log = AuditLog(fresh_db, Signer(AuditSettings().signing_key.get_secret_value()))
    await log.ensure_indexes()
    return log


async def build(log: AuditLog, topic: str) -> str:
    ds = [Delivery(Envelope.wrap(RequestAccepted(request_id=f"R{i}", staff_id=f"s{i}",
                                                 accepted_at=datetime(2026, 11, 2, tzinfo=UTC)),
                                 source="/civicgrid/grid", event_id=f"{topic}-{i}"), topic, 0, 100 + i)
          for i in range(N)]
    await log.append(ds[:4])
    await log.append(ds[2:])  # overlapping redelivery: appended once
    await log.checkpoint()
    name = log_name(topic, 0)
    assert (await log.verify(name))["ok"]
    return name


async def get(log, name, seq):
    return await log.records.find_one({"_id": record_id(name, seq)})


async def move(log, name, doc, seq):
    await log.records.delete_one({"_id": doc["_id"]})
    await log.records.insert_one({**doc, "_id": record_id(name, seq), "seq": seq})


async def test_intact_log_verifies_with_signed_checkpoint_and_inclusion_proof(trail):
    name = await build(trail, "tamper.intact")
    r = await trail.verify(name)
    assert r["ok"] and r["size"] == N and r["checkpoints_checked"] == 1 and r["problem"] is None
    proof = await trail.inclusion("tamper.intact-3")
    assert proof["verified"] and proof["seq"] == 3 and proof["checkpoint"]["size"] == N


async def test_altered_record_is_named(trail):
    name = await build(trail, "tamper.alter")
    doc = await get(trail, name, 4)
    raw = json.loads(doc["raw"])
    raw["data"]["staff_id"] = "someone-else"
    await trail.records.update_one({"_id": doc["_id"]}, {"$set": {"raw": merkle.canonical(raw).decode()}})
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "altered" and r["problem"]["seq"] == 4


async def test_altered_record_with_recomputed_hashes_is_caught_by_the_signed_checkpoint(trail):
    name = await build(trail, "tamper.alter2")
    # a careful forger rewrites content, leaf and chain of every record from 4 on
    chain = bytes.fromhex((await get(trail, name, 3))["chain"])
    for seq in range(4, N):
        doc = await get(trail, name, seq)
        raw = json.loads(doc["raw"])
        if seq == 4:
            raw["data"]["staff_id"] = "forged"
        text = merkle.canonical(raw).decode()
        leaf = merkle.leaf_hash(text.encode())
        new_chain = merkle.chain_hash(chain, leaf)
        await trail.records.update_one({"_id": doc["_id"]}, {"$set": {"raw": text, "leaf": leaf.hex(),
                                                                      "prev": chain.hex(), "chain": new_chain.hex()}})
        chain = new_chain
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "altered" and "checkpoint" in r["problem"]["detail"]


async def test_deleted_record_is_named(trail):
    name = await build(trail, "tamper.delete")
    await trail.records.delete_one({"_id": record_id(name, 4)})
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "removed" and r["problem"]["seq"] == 4


async def test_deleted_and_renumbered_record_is_named(trail):
    name = await build(trail, "tamper.delete2")
    await trail.records.delete_one({"_id": record_id(name, 4)})
    for seq in range(5, N):
        await move(trail, name, await get(trail, name, seq), seq - 1)
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "removed" and r["problem"]["seq"] == 4


async def test_deleted_tail_is_caught_by_the_signed_checkpoint(trail):
    name = await build(trail, "tamper.tail")
    await trail.records.delete_one({"_id": record_id(name, N - 1)})
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "removed" and r["problem"]["seq"] == N - 1


async def test_inserted_record_is_named(trail):
    name = await build(trail, "tamper.insert")
    for seq in range(N - 1, 3, -1):  # make room at seq 4
        await move(trail, name, await get(trail, name, seq), seq + 1)
    prev = bytes.fromhex((await get(trail, name, 3))["chain"])
    text = merkle.canonical({"forged": True}).decode()
    leaf = merkle.leaf_hash(text.encode())
    await trail.records.insert_one({"_id": record_id(name, 4), "log": name, "seq": 4, "offset": 103,
                                    "event_id": "forged", "raw": text, "leaf": leaf.hex(), "prev": prev.hex(),
                                    "chain": merkle.chain_hash(prev, leaf).hex()})
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "inserted" and r["problem"]["seq"] == 4


async def test_reordered_records_are_named(trail):
    name = await build(trail, "tamper.reorder")
    a, b = await get(trail, name, 4), await get(trail, name, 5)
    await trail.records.delete_one({"_id": a["_id"]})
    await trail.records.delete_one({"_id": b["_id"]})
    await trail.records.insert_one({**a, "_id": record_id(name, 5), "seq": 5})
    await trail.records.insert_one({**b, "_id": record_id(name, 4), "seq": 4})
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "reordered" and r["problem"]["seq"] == 4
