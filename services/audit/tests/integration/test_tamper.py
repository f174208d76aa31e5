"""Tamper evidence: for each of alter, delete, insert and reorder on a stored audit record, verify
names the kind and the record; an intact log verifies, with its signed checkpoint."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from civicgrid_audit.adapters.auditlog import (
    AuditLog,
    Signer,
    block_contents,
    log_name,
    record_id,
    records_of,
)
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


async def get(log: AuditLog, name: str, seq: int) -> dict:
    async for r in log.stored_records(name):
        if r["seq"] == seq:
            return r
    raise AssertionError(f"no record {seq}")


async def edit(log: AuditLog, name: str, seq: int, change) -> None:
    """Change the stored block that holds record ``seq`` as someone with write access to the store
    could: ``change`` edits its list of records in place, and the block is written back."""
    async for doc in log.records.find({"log": name}):
        records = records_of(doc)
        if any(r["seq"] == seq for r in records):
            change(records)
            await log.records.update_one({"_id": doc["_id"]}, {"$set": block_contents(records)})
            return
    raise AssertionError(f"no block holds record {seq}")


def at(records: list[dict], seq: int) -> int:
    return next(i for i, r in enumerate(records) if r["seq"] == seq)


async def test_intact_log_verifies_with_signed_checkpoint_and_inclusion_proof(trail):
    name = await build(trail, "tamper.intact")
    r = await trail.verify(name)
    assert r["ok"] and r["size"] == N and r["checkpoints_checked"] == 1 and r["problem"] is None
    proof = await trail.inclusion("tamper.intact-3")
    assert proof["verified"] and proof["seq"] == 3 and proof["checkpoint"]["size"] == N


async def test_altered_record_is_named(trail):
    name = await build(trail, "tamper.alter")

    def alter(records):
        r = records[at(records, 4)]
        raw = json.loads(r["raw"])
        raw["data"]["staff_id"] = "someone-else"
        r["raw"] = merkle.canonical(raw).decode()

    await edit(trail, name, 4, alter)
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "altered" and r["problem"]["seq"] == 4


async def test_altered_record_with_recomputed_hashes_is_caught_by_the_signed_checkpoint(trail):
    name = await build(trail, "tamper.alter2")
    # a careful forger rewrites content, leaf and chain of every record from 4 on
    chain = bytes.fromhex((await get(trail, name, 3))["chain"])

    def forge(records):
        nonlocal chain
        for r in records[at(records, 4):]:
            raw = json.loads(r["raw"])
            if r["seq"] == 4:
                raw["data"]["staff_id"] = "forged"
            r["raw"] = merkle.canonical(raw).decode()
            leaf = merkle.leaf_hash(r["raw"].encode())
            new_chain = merkle.chain_hash(chain, leaf)
            r.update(leaf=leaf.hex(), prev=chain.hex(), chain=new_chain.hex())
            chain = new_chain

    await edit(trail, name, 4, forge)
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "altered" and "checkpoint" in r["problem"]["detail"]


async def test_deleted_record_is_named(trail):
    name = await build(trail, "tamper.delete")
    await edit(trail, name, 4, lambda records: records.pop(at(records, 4)))
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "removed" and r["problem"]["seq"] == 4


async def test_deleted_and_renumbered_record_is_named(trail):
    name = await build(trail, "tamper.delete2")

    def delete_and_renumber(records):
        i = at(records, 4)
        records.pop(i)
        for r in records[i:]:
            r["seq"] -= 1

    await edit(trail, name, 4, delete_and_renumber)
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "removed" and r["problem"]["seq"] == 4


async def test_deleted_tail_is_caught_by_the_signed_checkpoint(trail):
    name = await build(trail, "tamper.tail")
    await edit(trail, name, N - 1, lambda records: records.pop(at(records, N - 1)))
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "removed" and r["problem"]["seq"] == N - 1


async def test_inserted_record_is_named(trail):
    name = await build(trail, "tamper.insert")
    prev = bytes.fromhex((await get(trail, name, 3))["chain"])
    text = merkle.canonical({"forged": True}).decode()
    leaf = merkle.leaf_hash(text.encode())

    def insert(records):
        i = at(records, 4)
        for r in records[i:]:  # make room at seq 4
            r["seq"] += 1
        records.insert(i, {"seq": 4, "offset": 103, "event_id": "forged", "raw": text, "leaf": leaf.hex(),
                           "prev": prev.hex(), "chain": merkle.chain_hash(prev, leaf).hex()})

    await edit(trail, name, 4, insert)
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "inserted" and r["problem"]["seq"] == 4


async def test_reordered_records_are_named(trail):
    name = await build(trail, "tamper.reorder")

    def swap(records):
        i, j = at(records, 4), at(records, 5)
        records[i], records[j] = {**records[j], "seq": 4}, {**records[i], "seq": 5}

    await edit(trail, name, 4, swap)
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "reordered" and r["problem"]["seq"] == 4


async def test_a_removed_block_is_named(trail):
    name = await build(trail, "tamper.block")
    await trail.records.delete_one({"_id": record_id(name, 4)})  # the block of records 4-9
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "removed" and r["problem"]["seq"] == 4


async def test_records_stored_one_per_document_before_blocks_are_read_and_continued(trail):
    name = await build(trail, "tamper.legacy")
    for doc in await trail.records.find({"log": name}).to_list(None):  # the layout before blocks
        await trail.records.delete_one({"_id": doc["_id"]})
        for r in records_of(doc):
            await trail.records.insert_one({"_id": record_id(name, r["seq"]), **r})
    assert (await trail.verify(name))["ok"]
    assert (await trail.inclusion("tamper.legacy-6"))["verified"]
    successor = AuditLog(trail.db, trail.signer)  # reads the head, folds nothing, appends a block after
    await trail.records.database["log_heads"].delete_many({"_id": name})
    ds = [Delivery(Envelope.wrap(RequestAccepted(request_id=f"R{i}", staff_id="s", accepted_at=datetime(
        2026, 11, 3, tzinfo=UTC)), source="/civicgrid/grid", event_id=f"legacy-{i}"), "tamper.legacy", 0, 100 + i)
          for i in range(N - 2, N + 3)]
    assert await successor.append(ds) == 3
    await successor.checkpoint()
    r = await successor.verify(name)
    assert r["ok"] and r["size"] == N + 3 and r["checkpoints_checked"] == 2
