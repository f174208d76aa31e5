"""The tamper-evident audit log: every consumed event appended, hash-chained, Merkle-checkpointed.

Design (single writer per log, no coordination between replicas):

- one log per Kafka topic-partition consumed (``log = "intake_requests_v1:3"``). Kafka gives each
  partition to exactly one member of the consumer group, so each log has one writer; the sequence
  is the log's own counter (``seq`` 0, 1, 2 ...) and the source offset is kept beside it;
- a record is ``{log, seq, offset, event_id, raw, leaf, prev, chain}``: ``raw`` is the canonical
  JSON of the event, ``leaf = SHA-256(0x00||raw)``, ``chain = SHA-256(prev||leaf)``;
- records are stored in *blocks*: one document holds the consecutive records an append wrote (at
  most ``BLOCK_RECORDS``), packed, with ``_id = log#<first seq>``, ``seq`` (the first), ``n`` and
  ``ids`` (its event ids, for look-ups). The store's cost of a write is mostly per document: one
  document per event was a third of a replay's store work. A block always starts where the log
  ended, so two writers during a rebalance that saw the same end both write that ``_id``: the
  loser's insert fails, its batch is retried and finds the records there. Documents of a single
  record (``raw`` etc. at the top, no ``n``), written before blocks, are read as blocks of one;
- ``log_heads`` caches size, last offset, chain and the Merkle *frontier* (log2(n) subtree roots);
  records are the truth: after a crash between the insert and the head update, the next append
  folds the records past the cached size into the head first;
- ``checkpoints`` are signed tree heads (Ed25519): ``log, size, root, timestamp, signature`` over
  ``civicgrid-audit-checkpoint\\n{log}\\n{size}\\n{root}\\n{timestamp}``;
- ``verify`` streams the records in ``seq`` order (never the whole log in memory), recomputes every
  leaf and link and the Merkle root at each checkpoint size, and names the first record that was
  altered, removed, inserted or reordered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pymongo import ASCENDING, InsertOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from civicgrid_audit.domain import merkle
from civicgrid_contracts import Envelope
from civicgrid_runtime.bus import Delivery
from civicgrid_runtime.store import pack_json, unpack_json

RECORDS, HEADS, CHECKPOINTS = "log_records", "log_heads", "checkpoints"
#: the most records one stored block holds (a replay appends thousands at a time; about 200 kB packed)
BLOCK_RECORDS = 256
RECORD_FIELDS = ("seq", "offset", "event_id", "raw", "leaf", "prev", "chain")


class LogConflict(RuntimeError):
    """Another writer appended to this log at the same time (rebalance overlap); retry the batch."""


def log_name(topic: str, partition: int) -> str:
    return f"{topic.replace('.', '_')}:{partition}"


def raw_event(env: Envelope, data: dict[str, Any] | None = None) -> str:
    """The canonical JSON of an event; ``data``: its payload dumped in JSON mode, if at hand."""
    doc = env.to_document(data=data)
    doc["time"] = env.time.astimezone(UTC).isoformat()
    return merkle.canonical_json(doc).decode()


def record_id(log: str, seq: int) -> str:
    return f"{log}#{seq:012d}"


def block_document(log: str, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The stored block of consecutive ``records`` (dicts of ``RECORD_FIELDS``) of ``log``."""
    first = records[0]["seq"]
    return {"_id": record_id(log, first), "log": log, "seq": first, **block_contents(records)}


def block_contents(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A block's fields that depend on its records (packed as rows of ``RECORD_FIELDS``)."""
    return {"n": len(records), "ids": [r["event_id"] for r in records],
            "records": pack_json([[r[f] for f in RECORD_FIELDS] for r in records])}


def records_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The records a stored document holds, in their stored order, each with its ``log``: a block's,
    or the one record of a document written before blocks."""
    if "records" not in doc:
        return [{"log": doc.get("log"), **{f: doc.get(f) for f in RECORD_FIELDS}}]
    log = doc.get("log")
    return [{"log": log, **dict(zip(RECORD_FIELDS, r, strict=False))} for r in unpack_json(doc["records"])]


def checkpoint_message(log: str, size: int, root_hex: str, timestamp: str) -> bytes:
    return f"civicgrid-audit-checkpoint\n{log}\n{size}\n{root_hex}\n{timestamp}".encode()


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
        self._flushing = asyncio.Lock()

    async def ensure_indexes(self) -> None:
        await self.records.create_index([("log", ASCENDING), ("seq", ASCENDING)], name="log_seq")
        await self.records.create_index([("ids", ASCENDING)], name="event_ids")
        await self.checkpoints.create_index([("log", ASCENDING), ("size", ASCENDING)], name="log_size")

    # ------------------------------------------------------------------ append

    async def _head(self, log: str) -> dict[str, Any]:
        cached = self._heads.get(log)
        if cached is not None:
            return cached
        stored = await self.heads.find_one({"_id": log})
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
        """The records at ``seq`` and after, read by their blocks' ``_id`` (``<log>#<first seq>``,
        which every store indexes) a window of ids at a time rather than by a range query on ``seq``
        (a window finds one block, or up to ``probe`` blocks of one)."""
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

    async def append(self, deliveries: Sequence[Delivery], *, payloads: Mapping[str, dict[str, Any]] | None = None
                     ) -> int:
        """Append the deliveries of one topic-partition (in offset order); idempotent by offset.
        ``payloads``: event id -> payload dumped in JSON mode, where the caller has them already."""
        if not deliveries:
            return 0
        log = log_name(deliveries[0].topic, deliveries[0].partition)
        head = await self._head(log)
        size, chain = head["size"], bytes.fromhex(head["chain"])
        frontier = merkle.frontier_from_doc(head["frontier"])
        last_offset = head["last_offset"]
        records = []
        for d in deliveries:
            if d.offset <= last_offset:
                continue  # already in the log (redelivery)
            raw = raw_event(d.envelope, payloads.get(d.envelope.id) if payloads else None)
            leaf = merkle.leaf_hash(raw.encode())
            new_chain = merkle.chain_hash(chain, leaf)
            records.append({"seq": size, "offset": d.offset, "event_id": d.envelope.id, "raw": raw,
                            "leaf": leaf.hex(), "prev": chain.hex(), "chain": new_chain.hex()})
            frontier = merkle.frontier_append(frontier, leaf)
            chain, size, last_offset = new_chain, size + 1, d.offset
        if not records:
            return 0
        ops = [InsertOne(block_document(log, records[i:i + BLOCK_RECORDS]))
               for i in range(0, len(records), BLOCK_RECORDS)]
        try:
            await self.records.bulk_write(ops, ordered=True)
        except (BulkWriteError, DuplicateKeyError) as exc:
            self.forget(log)  # the retry reads the head and the other writer's records
            raise LogConflict(f"{log}: another writer appended concurrently") from exc
        self._heads[log] = {"_id": log, "size": size, "last_offset": last_offset, "chain": chain.hex(),
                            "frontier": merkle.frontier_to_doc(frontier)}
        self._unwritten.add(log)
        return len(records)

    async def flush_heads(self) -> int:
        """Write back the heads that moved since their last write; each write is guarded by the size
        this process last saw stored, so a head another writer moved meanwhile is left to it (and
        read again here). Returns how many were written."""
        async with self._flushing:
            written = 0
            for log in sorted(self._unwritten):
                head = self._heads.get(log)
                self._unwritten.discard(log)
                if head is None:
                    continue
                prev = self._stored_size.get(log)
                doc = {k: head[k] for k in ("size", "last_offset", "chain", "frontier")}
                doc["updated_at"] = datetime.now(UTC)
                try:
                    if prev is None:
                        res = await self.heads.update_one({"_id": log, "size": {"$lte": 0}}, {"$set": doc},
                                                          upsert=True)
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
        async for head in self.heads.find({}):
            last = await self.checkpoints.find({"log": head["_id"]}).sort("size", -1).limit(1).to_list(None)
            if last and last[0]["size"] >= head["size"]:
                continue
            root = merkle.frontier_root(merkle.frontier_from_doc(head["frontier"])).hex()
            ts = (now or datetime.now(UTC)).astimezone(UTC).isoformat()
            cp = {"_id": f"{head['_id']}#{head['size']:012d}", "log": head["_id"], "size": head["size"],
                  "root": root, "timestamp": ts, "public_key": self.signer.public_hex,
                  "signature": self.signer.sign(checkpoint_message(head["_id"], head["size"], root, ts))}
            try:
                await self.checkpoints.insert_one(cp)
            except DuplicateKeyError:
                continue  # another replica signed the same head
            out.append(cp)
        return out

    async def logs(self) -> list[str]:
        return sorted([h["_id"] async for h in self.heads.find({}, {"_id": 1})])

    # ------------------------------------------------------------------ verification

    async def stored_records(self, log: str) -> AsyncIterator[dict[str, Any]]:
        """Every record stored for ``log``, in ``seq`` order as stored: blocks by their first seq,
        the records of each by their own (a record without one first), never the whole log in memory."""
        cursor = self.records.find({"log": log}).sort([("seq", ASCENDING), ("_id", ASCENDING)]).batch_size(32)
        async for doc in cursor:
            for r in sorted(records_of(doc), key=lambda r: -1 if r["seq"] is None else r["seq"]):
                yield r

    async def _follower(self, log: str, chain_hex: str, after: int) -> dict[str, Any] | None:
        """The record past seq ``after`` that names ``chain_hex`` as its predecessor, if any (a scan:
        verify looks for it only once it found the log broken)."""
        async for r in self.stored_records(log):
            if r.get("prev") == chain_hex and r.get("seq") is not None and r["seq"] > after:
                return r
        return None

    async def verify(self, log: str) -> dict[str, Any]:
        """Prove the log intact, or name the first record altered, removed, inserted or reordered."""
        cps = await self.checkpoints.find({"log": log}).sort("size", ASCENDING).to_list(None)
        bad_sig = [c for c in cps if not self.signer.check(checkpoint_message(log, c["size"], c["root"], c["timestamp"]),
                                                         c["signature"])]
        result: dict[str, Any] = {"log": log, "ok": True, "size": 0, "checkpoints_checked": 0, "problem": None}
        if bad_sig:
            return {**result, "ok": False, "problem": {"kind": "bad_checkpoint_signature", "seq": bad_sig[0]["size"],
                                                     "detail": f"checkpoint at size {bad_sig[0]['size']} has an "
                                                               "invalid signature"}}
        cp_iter = iter(cps)
        next_cp = next(cp_iter, None)
        expected = 0
        chain = merkle.GENESIS
        prev_chain = merkle.GENESIS  # the chain before the previous record
        frontier: merkle.Frontier = []

        def fail(kind: str, seq: int, detail: str) -> dict[str, Any]:
            return {**result, "ok": False, "size": expected, "problem": {"kind": kind, "seq": seq, "detail": detail}}

        async for r in self.stored_records(log):
            seq = r.get("seq")
            if seq is None or seq < expected:
                return fail("inserted", expected - 1 if seq is None else seq,
                            f"a second record claims seq {seq} (an inserted record)")
            if seq > expected:
                return fail("removed", expected, f"record seq {expected} is missing (next present is {seq})")
            leaf = merkle.leaf_hash(str(r.get("raw", "")).encode())
            if leaf.hex() != r.get("leaf") or r.get("chain") != merkle.chain_hash(bytes.fromhex(r.get("prev", "00")),
                                                                                    leaf).hex():
                if r.get("prev") == chain.hex() or leaf.hex() != r.get("leaf"):
                    return fail("altered", seq, f"record seq {seq} (event {r.get('event_id')}) does not match its "
                                                "hash: its content was altered")
            if r.get("prev") != chain.hex():
                if r.get("prev") == prev_chain.hex():
                    return fail("inserted", seq - 1, f"record seq {seq - 1} is not part of the chain: it was inserted")
                belongs = await self._follower(log, chain.hex(), seq)
                if belongs is not None:
                    return fail("reordered", seq, f"record seq {seq} is out of place: the record that follows seq "
                                                  f"{seq - 1} was found at seq {belongs['seq']}")
                return fail("removed", seq, f"the record(s) before seq {seq} were removed: its link names an "
                                            "unknown predecessor")
            prev_chain, chain = chain, bytes.fromhex(r["chain"])
            frontier = merkle.frontier_append(frontier, leaf)
            expected += 1
            while next_cp is not None and next_cp["size"] == expected:
                if merkle.frontier_root(frontier).hex() != next_cp["root"]:
                    return fail("altered", expected - 1, f"Merkle root at size {expected} differs from the signed "
                                                         "checkpoint: a record up to here was altered")
                result["checkpoints_checked"] += 1
                next_cp = next(cp_iter, None)
        if next_cp is not None and next_cp["size"] > expected:
            return fail("removed", expected, f"the signed checkpoint covers {next_cp['size']} records but only "
                                             f"{expected} remain: records from seq {expected} were removed")
        result["size"] = expected
        result["root"] = merkle.frontier_root(frontier).hex()
        return result

    async def inclusion(self, event_id: str) -> dict[str, Any] | None:
        """Inclusion proof of an event in the latest checkpoint of its log (RFC 6962)."""
        doc = await self.records.find_one({"$or": [{"ids": event_id}, {"event_id": event_id}]})
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
