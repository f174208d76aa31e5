"""The tamper-evident audit log: every consumed event appended, hash-chained, Merkle-checkpointed.

Design (single writer per log, no coordination between replicas):

- one log per Kafka topic-partition consumed (``log = "intake_requests_v1:3"``). Kafka gives each
  partition to exactly one member of the consumer group, so each log has one writer; the sequence
  is the log's own counter (``seq`` 0, 1, 2 ...) and the source offset is kept beside it;
- one document per record, ``_id = <log>#<seq, 12 digits>``, with ``log, seq, offset, event_id,
  raw, leaf, prev, chain`` as plain fields: ``raw`` is the canonical JSON of the event,
  ``leaf = SHA-256(0x00||raw)`` (its Merkle leaf), ``chain = SHA-256(prev||leaf)`` and ``prev``
  the link to the record before. ``event_id`` is indexed: an operator finds an event's record with
  ``db.log_records.find({event_id: ...})``. Two writers during a rebalance that saw the same end
  both insert that ``_id``: the unique ``_id`` is the claim, the loser's batch is retried and finds
  the records there. Older shapes (blocks of packed records, records before versions) are read
  through ``records_of`` (adapters/documents.py);
- ``log_heads`` caches size, last offset, chain and the Merkle *frontier* (log2(n) subtree roots);
  records are the truth: after a crash between the insert and the head update, the next append
  folds the records past the cached size into the head first;
- ``checkpoints`` are signed tree heads (Ed25519): ``log, size, root, timestamp, signature`` over
  ``civicgrid-audit-checkpoint\\n{log}\\n{size}\\n{root}\\n{timestamp}``;
- ``verify_all`` reads the records once, sorted by log and sequence, and checks every log as its
  records stream by (domain/trail.py): never a log in memory, never a log read twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from civicgrid_audit.adapters.documents import (
    CHECKPOINTS,
    HEADS,
    RECORDS,
    split_block,
    stamped,
    upcast,
)
from civicgrid_audit.domain import merkle
from civicgrid_audit.domain.trail import LogVerification, checkpoint_message
from civicgrid_contracts import Envelope
from civicgrid_runtime.bus import Delivery
from civicgrid_runtime.store import BULK_CHUNK, find_by_ids

#: sorted by log, then sequence, then ``_id`` (a duplicate sequence, e.g. an inserted record, in a fixed order)
LOG_ORDER = [("log", ASCENDING), ("seq", ASCENDING), ("_id", ASCENDING)]


class LogConflict(RuntimeError):
    """Another writer appended to this log at the same time (rebalance overlap); retry the batch."""


def log_name(topic: str, partition: int) -> str:
    return f"{topic.replace('.', '_')}:{partition}"


def raw_event(env: Envelope, data: dict[str, Any] | None = None) -> str:
    """The canonical JSON of an event; ``data``: its payload dumped in JSON mode, if at hand."""
    doc = env.to_document(data=data)
    doc["time"] = env.time.astimezone(UTC).isoformat()
    return merkle.canonical_json(doc).decode()


def delivery_key(d: Delivery) -> tuple[str, int, int]:
    """Where a message was consumed: its topic, partition and offset."""
    return d.topic, d.partition, d.offset


def record_id(log: str, seq: int) -> str:
    return f"{log}#{seq:012d}"


def record_document(log: str, record: dict[str, Any]) -> dict[str, Any]:
    """The stored document of one record (a dict of ``seq, offset, event_id, raw, leaf, prev, chain``)."""
    return stamped(RECORDS, {"_id": record_id(log, record["seq"]), "log": log, **record})


def records_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The records a stored document holds, in their stored order, each in today's shape (one, or
    the records of a block an older version packed)."""
    return [upcast(RECORDS, r) for r in split_block(doc)]


async def record_payloads(records: AsyncCollection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The payload of the event each record holds (record ``_id`` -> ``data`` of its ``raw``), read
    by ``_id``; a record not found is left out."""
    found = await find_by_ids(records, ids, {"raw": 1})
    return {rid: orjson.loads(doc["raw"])["data"] for rid, doc in found.items() if "raw" in doc}


class Signer:
    def __init__(self, seed_hex: str) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
        self.public_key: Ed25519PublicKey = self._key.public_key()
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self.public_hex = self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    def sign(self, msg: bytes) -> str:
        return self._key.sign(msg).hex()

    def check(self, msg: bytes, sig_hex: str) -> bool:
        try:
            self.public_key.verify(bytes.fromhex(sig_hex), msg)
            return True
        except Exception:  # noqa: BLE001 - InvalidSignature or malformed hex
            return False


class AuditLog:
    """Appends, checkpoints and verifies the logs. The head of each log this process appends to is
    kept in memory (each log has one writer) and written back every ``flush_heads``: the records
    are the truth, a stored head only saves the next writer from folding them all, so the head's
    read and write need not be on every batch's path."""

    def __init__(self, db: AsyncDatabase, signer: Signer) -> None:
        self.db = db
        self.records = db[RECORDS]
        self.heads = db[HEADS]
        self.checkpoints = db[CHECKPOINTS]
        self.signer = signer
        #: log -> its head after this process's last append to it
        self._heads: dict[str, dict[str, Any]] = {}
        #: log -> the size of its stored head when this process last read or wrote it (None: none stored)
        self._stored_size: dict[str, int | None] = {}
        self._unwritten: set[str] = set()

    async def ensure_indexes(self) -> None:
        await self.records.create_index(LOG_ORDER, name="log_seq_id")
        await self.records.create_index([("event_id", ASCENDING)], name="event_id")
        await self.records.create_index([("ids", ASCENDING)], name="event_ids")  # blocks of version 1
        await self.checkpoints.create_index([("log", ASCENDING), ("size", ASCENDING)], name="log_size")

    # ------------------------------------------------------------------ append

    async def _head(self, log: str) -> dict[str, Any]:
        cached = self._heads.get(log)
        if cached is not None:
            return cached
        stored = upcast(HEADS, await self.heads.find_one({"_id": log}))
        head = stored or {"_id": log, "size": 0, "last_offset": -1, "chain": merkle.GENESIS.hex(), "frontier": []}
        self._stored_size[log] = stored["size"] if stored else None
        tail = await self._records_from(log, head["size"])
        if tail:  # a crash (or a head not written back yet) left records past the stored head: fold them in
            frontier = merkle.frontier_from_doc(head["frontier"])
            for r in tail:
                frontier = merkle.frontier_append(frontier, bytes.fromhex(r["leaf"]))
                head.update(size=r["seq"] + 1, last_offset=r["offset"], chain=r["chain"])
            head["frontier"] = merkle.frontier_to_doc(frontier)
            self._unwritten.add(log)
        if stored is None:
            self._unwritten.add(log)
        self._heads[log] = head
        return head

    def forget(self, log: str) -> None:
        """Read this log's head from the store again at its next append (another writer was there)."""
        self._heads.pop(log, None)
        self._stored_size.pop(log, None)
        self._unwritten.discard(log)

    async def _records_from(self, log: str, seq: int, probe: int = 64) -> list[dict[str, Any]]:
        """The records at ``seq`` and after, read by ``_id`` (``<log>#<seq>``, which every store
        indexes) a window of ids at a time rather than by a range query on ``seq`` (the embedded
        store answers only ``_id`` look-ups from an index). A block of an older version counts as
        the records it holds."""
        out: list[dict[str, Any]] = []
        at = seq
        while True:
            ids = [record_id(log, s) for s in range(at, at + probe)]
            found = {d["seq"]: d for d in await self.records.find({"_id": {"$in": ids}}).to_list(None)}
            if at not in found:
                return out
            while at in found:
                block = records_of(found[at])
                out += block
                at += len(block)

    async def _end(self, log: str) -> int:
        """The size of a log, from this process's head if it writes there, else from the stored head
        and the records past it (without keeping a head of a log this process does not write)."""
        if log in self._heads:
            return self._heads[log]["size"]
        stored = upcast(HEADS, await self.heads.find_one({"_id": log}))
        size = stored["size"] if stored else 0
        tail = await self._records_from(log, size)
        return tail[-1]["seq"] + 1 if tail else size

    async def records_between(self, log: str, after: int, before: int, probe: int = 64) -> list[dict[str, Any]]:
        """The records of ``log`` whose source offset is above ``after`` and below ``before``, read
        back from the log's end by ``_id`` a window at a time (the recent past: what a process that
        crashed folded since its last KPI count, say), in sequence order."""
        top = await self._end(log) - 1
        out: list[dict[str, Any]] = []
        while top >= 0:
            ids = [record_id(log, s) for s in range(max(0, top - probe + 1), top + 1)]
            found = [r for d in await self.records.find({"_id": {"$in": ids}}).to_list(None) for r in records_of(d)]
            out += [r for r in found if after < r["offset"] < before]
            if found and min(r["offset"] for r in found) <= after:
                break
            top -= probe
        return sorted(out, key=lambda r: r["seq"])

    async def append(self, deliveries: Sequence[Delivery], *,
                     payloads: Mapping[tuple[str, int, int], dict[str, Any]] | None = None,
                     records: dict[tuple[str, int, int], str] | None = None) -> int:
        """Append the deliveries of one topic-partition (in offset order); idempotent by offset.
        ``payloads``: ``delivery_key`` -> payload dumped in JSON mode, where the caller has them already
        (by delivery, not event id: two messages with one id -- say, an escalation decided twice --
        are each recorded as they were consumed). ``records``: filled with ``delivery_key`` -> the
        ``_id`` of the record appended for it (a delivery in the log already is left out)."""
        if not deliveries:
            return 0
        log = log_name(deliveries[0].topic, deliveries[0].partition)
        head = await self._head(log)
        size, chain = head["size"], bytes.fromhex(head["chain"])
        frontier = merkle.frontier_from_doc(head["frontier"])
        last_offset = head["last_offset"]
        docs = []
        for d in deliveries:
            if d.offset <= last_offset:
                continue  # already in the log (redelivery)
            raw = raw_event(d.envelope, payloads.get(delivery_key(d)) if payloads else None)
            leaf = merkle.leaf_hash(raw.encode())
            new_chain = merkle.chain_hash(chain, leaf)
            docs.append(record_document(log, {"seq": size, "offset": d.offset, "event_id": d.envelope.id, "raw": raw,
                                              "leaf": leaf.hex(), "prev": chain.hex(), "chain": new_chain.hex()}))
            if records is not None:
                records[delivery_key(d)] = docs[-1]["_id"]
            frontier = merkle.frontier_append(frontier, leaf)
            chain, size, last_offset = new_chain, size + 1, d.offset
        if not docs:
            return 0
        try:
            # in order: a record is written only after the one it links to, so a conflict on a
            # sequence number leaves this writer's records before it a valid continuation
            for i in range(0, len(docs), BULK_CHUNK):
                await self.records.insert_many(docs[i:i + BULK_CHUNK], ordered=True)
        except (BulkWriteError, DuplicateKeyError) as exc:
            self.forget(log)  # the retry reads the head and the other writer's records
            raise LogConflict(f"{log}: another writer appended concurrently") from exc
        self._heads[log] = {"_id": log, "size": size, "last_offset": last_offset, "chain": chain.hex(),
                            "frontier": merkle.frontier_to_doc(frontier)}
        self._unwritten.add(log)
        return len(docs)

    async def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return await record_payloads(self.records, ids)

    async def flush_heads(self) -> int:
        """Write back the heads that moved since their last write; each write is guarded by the size
        this process last saw stored, so a head another writer moved meanwhile is left to it (and
        read again here). Returns how many were written. Flushes running at the same time take
        disjoint logs (each takes the whole set of unwritten ones at once)."""
        todo, self._unwritten = sorted(self._unwritten), set()
        written = 0
        for log in todo:
            head = self._heads.get(log)
            if head is None:
                continue
            prev = self._stored_size.get(log)
            doc = stamped(HEADS, {k: head[k] for k in ("size", "last_offset", "chain", "frontier")})
            doc["updated_at"] = datetime.now(UTC)
            try:
                if prev is None:
                    res = await self.heads.update_one({"_id": log, "size": {"$lte": 0}}, {"$set": doc}, upsert=True)
                else:
                    res = await self.heads.update_one({"_id": log, "size": prev}, {"$set": doc})
                moved = res.matched_count == 0 and res.upserted_id is None
            except DuplicateKeyError:
                moved = True
            if moved:  # read it again (with every record past it), to be written at the next flush
                self.forget(log)
                await self._head(log)
                continue
            if log in self._heads:
                self._stored_size[log] = doc["size"]
            written += 1
        return written

    # ------------------------------------------------------------------ checkpoints

    async def checkpoint(self, *, now: datetime | None = None) -> list[dict[str, Any]]:
        """Sign a tree head for every log that grew since its last checkpoint."""
        await self.flush_heads()
        out = []
        async for stored in self.heads.find({}):
            head = upcast(HEADS, stored)
            last = await self.checkpoints.find({"log": head["_id"]}).sort("size", -1).limit(1).to_list(None)
            if last and last[0]["size"] >= head["size"]:
                continue
            root = merkle.frontier_root(merkle.frontier_from_doc(head["frontier"])).hex()
            ts = (now or datetime.now(UTC)).astimezone(UTC).isoformat()
            cp = stamped(CHECKPOINTS, {
                "_id": f"{head['_id']}#{head['size']:012d}", "log": head["_id"], "size": head["size"], "root": root,
                "timestamp": ts, "public_key": self.signer.public_hex,
                "signature": self.signer.sign(checkpoint_message(head["_id"], head["size"], root, ts))})
            try:
                await self.checkpoints.insert_one(cp)
            except DuplicateKeyError:
                continue  # another replica signed the same head
            out.append(cp)
        return out

    async def logs(self) -> list[str]:
        return sorted([h["_id"] async for h in self.heads.find({}, {"_id": 1})])

    # ------------------------------------------------------------------ verification

    async def stored_records(self, log: str | None = None, *,
                             on_document: Callable[[], None] | None = None) -> AsyncIterator[dict[str, Any]]:
        """The stored records (of ``log``, or of every log), sorted by log and sequence as stored, a
        block's records by their own; one cursor, never a log in memory. ``on_document``: called
        for every stored document read (a progress bar)."""
        cursor = self.records.find({"log": log} if log else {}).sort(LOG_ORDER).batch_size(500)
        async for doc in cursor:
            if on_document:
                on_document()
            for r in sorted(records_of(doc), key=lambda r: -1 if r["seq"] is None else r["seq"]):
                yield r

    async def count_documents(self, log: str | None = None) -> int:
        """How many stored documents ``verify_all`` reads (the progress bar's total)."""
        if log:
            return await self.records.count_documents({"log": log})
        return await self.records.estimated_document_count()

    async def verify_all(self, log: str | None = None, *,
                         on_document: Callable[[], None] | None = None) -> list[dict[str, Any]]:
        """Verify every log (or one) in ONE pass over the records: intact, or the first record altered,
        removed, inserted or reordered (domain/trail.py). Logs are those with records, a head or a
        checkpoint (a log whose records were all removed still has its signed checkpoints)."""
        cps: dict[str, list[dict[str, Any]]] = {}
        async for c in self.checkpoints.find({"log": log} if log else {}):
            cps.setdefault(c["log"], []).append(upcast(CHECKPOINTS, c))
        names = set(cps) | ({log} if log else set(await self.logs()))
        checks: dict[str, LogVerification] = {}

        def check_of(name: str) -> LogVerification:
            if name not in checks:
                checks[name] = LogVerification(name, cps.get(name, []), self.signer.check)
            return checks[name]

        async for r in self.stored_records(log, on_document=on_document):
            check_of(r["log"]).feed(r)
        for name in names:
            check_of(name)
        return [checks[name].finish() for name in sorted(checks)]

    async def verify(self, log: str) -> dict[str, Any]:
        """Prove one log intact, or name its first record altered, removed, inserted or reordered."""
        return (await self.verify_all(log))[0]

    async def inclusion(self, event_id: str) -> dict[str, Any] | None:
        """Inclusion proof of an event in the latest checkpoint of its log (RFC 6962)."""
        doc = await self.records.find_one({"$or": [{"event_id": event_id}, {"ids": event_id}]})
        rec = next((r for r in records_of(doc) if r["event_id"] == event_id), None) if doc else None
        if rec is None:
            return None
        cp = await self.checkpoints.find({"log": rec["log"], "size": {"$gt": rec["seq"]}}).sort("size", -1).limit(
            1).to_list(None)
        if not cp:
            return {"log": rec["log"], "seq": rec["seq"], "leaf": rec["leaf"], "checkpoint": None, "proof": []}
        cp = cp[0]
        leaves = []
        async for x in self.stored_records(rec["log"]):
            if x["seq"] >= cp["size"]:
                break
            leaves.append(bytes.fromhex(x["leaf"]))
        proof = merkle.inclusion_proof(rec["seq"], leaves)
        return {"log": rec["log"], "seq": rec["seq"], "leaf": rec["leaf"],
                "checkpoint": {k: cp[k] for k in ("size", "root", "timestamp", "signature", "public_key")},
                "proof": [p.hex() for p in proof],
                "verified": merkle.verify_inclusion(rec["seq"], cp["size"], bytes.fromhex(rec["leaf"]), proof,
                                                    bytes.fromhex(cp["root"]))}
