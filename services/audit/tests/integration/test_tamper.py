"""Tamper evidence: for each of alter, delete, insert and reorder on stored audit records (one
document each), verify names the kind and the record; an intact log verifies, with its signed
checkpoint; every log of a trail is verified in one pass; logs stored in older shapes are read."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from civicgrid_audit.adapters.auditlog import AuditLog, Signer, log_name, record_id
from civicgrid_audit.adapters.documents import RECORD_FIELDS
from civicgrid_audit.domain import merkle
from civicgrid_audit.settings import AuditSettings
from civicgrid_contracts import Envelope
from civicgrid_contracts.events.grid import RequestAccepted
from civicgrid_runtime.bus import Delivery
from civicgrid_runtime.store import pack_json, unpack_json

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
    doc = await log.records.find_one({"_id": record_id(name, seq)})
    assert doc is not None, f"no record {seq}"
    return doc


async def edit(log: AuditLog, name: str, change) -> None:
    """Rewrite the log's stored records as someone with write access to the store could: ``change``
    edits the list of records (in seq order) in place, and the records are stored again, one
    document each under the id of the sequence number they claim (a second one with a suffix)."""
    records = await log.records.find({"log": name}).sort("seq", 1).to_list(None)
    change(records)
    await log.records.delete_many({"log": name})
    seen: set[str] = set()
    for r in records:
        _id = record_id(name, r["seq"])
        while _id in seen:
            _id += "-again"
        seen.add(_id)
        await log.records.insert_one({**r, "log": name, "_id": _id})


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

    await edit(trail, name, alter)
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

    await edit(trail, name, forge)
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "altered" and "checkpoint" in r["problem"]["detail"]


async def test_deleted_record_is_named(trail):
    name = await build(trail, "tamper.delete")
    await trail.records.delete_one({"_id": record_id(name, 4)})
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "removed" and r["problem"]["seq"] == 4


async def test_deleted_and_renumbered_record_is_named(trail):
    name = await build(trail, "tamper.delete2")

    def delete_and_renumber(records):
        i = at(records, 4)
        records.pop(i)
        for r in records[i:]:
            r["seq"] -= 1

    await edit(trail, name, delete_and_renumber)
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "removed" and r["problem"]["seq"] == 4


async def test_deleted_tail_is_caught_by_the_signed_checkpoint(trail):
    name = await build(trail, "tamper.tail")
    await trail.records.delete_one({"_id": record_id(name, N - 1)})
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

    await edit(trail, name, insert)
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "inserted" and r["problem"]["seq"] == 4


async def test_reordered_records_are_named(trail):
    name = await build(trail, "tamper.reorder")

    def swap(records):
        i, j = at(records, 4), at(records, 5)
        records[i], records[j] = {**records[j], "seq": 4}, {**records[i], "seq": 5}

    await edit(trail, name, swap)
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "reordered" and r["problem"]["seq"] == 4


async def test_a_removed_run_of_records_is_named(trail):
    name = await build(trail, "tamper.run")
    await trail.records.delete_many({"log": name, "seq": {"$gte": 4}})
    r = await trail.verify(name)
    assert not r["ok"] and r["problem"]["kind"] == "removed" and r["problem"]["seq"] == 4


async def test_every_log_is_verified_in_one_pass_naming_each_tampered_one(trail):
    names = [await build(trail, f"tamper.all{i}") for i in range(3)]
    await trail.records.delete_one({"_id": record_id(names[1], 6)})
    read = []
    results = {r["log"]: r for r in await trail.verify_all(on_document=lambda: read.append(1))}
    assert len(read) == 3 * N - 1, "each stored record is read once"
    assert results[names[0]]["ok"] and results[names[2]]["ok"]
    assert results[names[1]]["problem"]["kind"] == "removed" and results[names[1]]["problem"]["seq"] == 6


async def test_every_record_is_a_plain_document_an_operator_can_find_by_event_id(trail):
    name = await build(trail, "tamper.plain")
    doc = await trail.records.find_one({"event_id": "tamper.plain-3"})
    assert doc["_id"] == record_id(name, 3) and doc["schema_version"] == 2
    assert {"log", *RECORD_FIELDS} <= set(doc) and doc["prev"] == (await get(trail, name, 2))["chain"]
    assert doc["leaf"] == merkle.leaf_hash(doc["raw"].encode()).hex()
    assert "event_id" in {i["name"] async for i in await trail.records.list_indexes()}


def block_of_version_1(name: str, records: list[dict]) -> dict:
    """A log document as version 1 wrote it: up to 256 consecutive records packed in one block."""
    return {"_id": record_id(name, records[0]["seq"]), "log": name, "seq": records[0]["seq"], "n": len(records),
            "ids": [r["event_id"] for r in records], "records": pack_json([[r[f] for f in RECORD_FIELDS]
                                                                            for r in records])}


@pytest.mark.parametrize("shape", ["records before versions", "blocks of version 1", "both"])
async def test_logs_stored_in_older_shapes_are_read_verified_and_continued(trail, shape):
    topic = "tamper.legacy." + shape.replace(" ", "_")
    name = await build(trail, topic)
    records = await trail.records.find({"log": name}).sort("seq", 1).to_list(None)
    await trail.records.delete_many({"log": name})
    for r in records:
        del r["schema_version"]
    if shape == "records before versions":
        await trail.records.insert_many(records)
    elif shape == "blocks of version 1":
        await trail.records.insert_many([block_of_version_1(name, records[:6]), block_of_version_1(name, records[6:])])
    else:
        await trail.records.insert_many([block_of_version_1(name, records[:6]), *records[6:]])
    assert (await trail.verify(name))["ok"]
    assert (await trail.inclusion(f"{topic}-4"))["verified"]
    assert (await trail.inclusion(f"{topic}-8"))["verified"]
    successor = AuditLog(trail.db, trail.signer)  # no head: folds the older records, appends after them
    await trail.heads.delete_many({"_id": name})
    ds = [Delivery(Envelope.wrap(RequestAccepted(request_id=f"R{i}", staff_id="s", accepted_at=datetime(
        2026, 11, 3, tzinfo=UTC)), source="/civicgrid/grid", event_id=f"legacy-{i}"), topic, 0, 100 + i)
          for i in range(N - 2, N + 3)]
    assert await successor.append(ds) == 3
    await successor.checkpoint()
    r = await successor.verify(name)
    assert r["ok"] and r["size"] == N + 3 and r["checkpoints_checked"] == 2
    if shape != "records before versions":  # a block: tampering inside it is still named
        block = await trail.records.find_one({"_id": record_id(name, 0)})
        rows = [dict(zip(RECORD_FIELDS, row, strict=True)) for row in unpack_json(block["records"])]
        rows[2]["raw"] = rows[2]["raw"].replace("s2", "forged")
        await trail.records.replace_one({"_id": block["_id"]}, block_of_version_1(name, rows))
        r = await successor.verify(name)
        assert r["problem"]["kind"] == "altered" and r["problem"]["seq"] == 2
