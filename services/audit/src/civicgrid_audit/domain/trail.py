"""Verifying an audit log, record by record (pure): the rules ``civicgrid-audit verify`` applies.

A ``LogVerification`` is fed one log's records in ``(seq, stored order)`` order and never needs the
log in memory, so every log of a trail is verified in one pass over the records sorted by log.
It names the first record that was

- **altered**: its leaf is not the hash of its content, its link is not ``H(prev||leaf)``, or the
  Merkle root at a signed checkpoint's size differs from the checkpoint's;
- **removed**: a gap in the sequence, a link naming a predecessor nobody has, or fewer records than
  a signed checkpoint covers;
- **inserted**: a second record with a sequence number, or one outside the chain;
- **reordered**: a record out of place while the record that should follow sits later in the log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from civicgrid_audit.domain import merkle


def checkpoint_message(log: str, size: int, root_hex: str, timestamp: str) -> bytes:
    return f"civicgrid-audit-checkpoint\n{log}\n{size}\n{root_hex}\n{timestamp}".encode()


class LogVerification:
    """The verification of one log in progress. ``checkpoints``: its signed tree heads, any order;
    ``signature_ok``: checks a checkpoint's signature over its ``checkpoint_message``."""

    def __init__(self, log: str, checkpoints: Sequence[dict[str, Any]],
                 signature_ok: Callable[[bytes, str], bool]) -> None:
        self.log = log
        self.result: dict[str, Any] = {"log": log, "ok": True, "size": 0, "checkpoints_checked": 0, "problem": None}
        self._cps = sorted(checkpoints, key=lambda c: c["size"])
        self._next_cp = 0
        self._expected = 0
        self._chain = merkle.GENESIS
        self._prev_chain = merkle.GENESIS  # the chain before the previous record
        self._frontier: merkle.Frontier = []
        #: (chain, seq): the link broke at seq; does a later record follow that chain (reordered)?
        self._looking: tuple[str, int] | None = None
        self.done = False
        bad = next((c for c in self._cps if not signature_ok(
            checkpoint_message(log, c["size"], c["root"], c["timestamp"]), c["signature"])), None)
        if bad is not None:
            self._fail("bad_checkpoint_signature", bad["size"],
                       f"checkpoint at size {bad['size']} has an invalid signature", size=0)

    def _fail(self, kind: str, seq: int, detail: str, *, size: int | None = None) -> None:
        self.result.update(ok=False, size=self._expected if size is None else size,
                           problem={"kind": kind, "seq": seq, "detail": detail})
        self.done = True

    def feed(self, r: dict[str, Any]) -> None:
        """The log's next record (fields ``seq, event_id, raw, leaf, prev, chain``)."""
        if self.done:
            return
        if self._looking is not None:
            chain, at = self._looking
            if r.get("prev") == chain and r.get("seq") is not None and r["seq"] > at:
                self._fail("reordered", at, f"record seq {at} is out of place: the record that follows seq "
                                            f"{at - 1} was found at seq {r['seq']}")
            return
        seq, expected = r.get("seq"), self._expected
        if seq is None or seq < expected:
            return self._fail("inserted", expected - 1 if seq is None else seq,
                              f"a second record claims seq {seq} (an inserted record)")
        if seq > expected:
            return self._fail("removed", expected, f"record seq {expected} is missing (next present is {seq})")
        leaf = merkle.leaf_hash(str(r.get("raw", "")).encode())
        linked = r.get("chain") == merkle.chain_hash(bytes.fromhex(r.get("prev") or "00"), leaf).hex()
        if (leaf.hex() != r.get("leaf") or not linked) and (r.get("prev") == self._chain.hex()
                                                             or leaf.hex() != r.get("leaf")):
            return self._fail("altered", seq, f"record seq {seq} (event {r.get('event_id')}) does not match "
                                              "its hash: its content was altered")
        if r.get("prev") != self._chain.hex():
            if r.get("prev") == self._prev_chain.hex():
                return self._fail("inserted", seq - 1, f"record seq {seq - 1} is not part of the chain: "
                                                       "it was inserted")
            self._looking = (self._chain.hex(), seq)
            return None
        self._prev_chain, self._chain = self._chain, bytes.fromhex(r["chain"])
        self._frontier = merkle.frontier_append(self._frontier, leaf)
        self._expected += 1
        while self._next_cp < len(self._cps) and self._cps[self._next_cp]["size"] == self._expected:
            if merkle.frontier_root(self._frontier).hex() != self._cps[self._next_cp]["root"]:
                return self._fail("altered", self._expected - 1,
                                  f"Merkle root at size {self._expected} differs from the signed checkpoint: "
                                  "a record up to here was altered")
            self.result["checkpoints_checked"] += 1
            self._next_cp += 1
        return None

    def finish(self) -> dict[str, Any]:
        """The verdict, once every record of the log was fed."""
        if self.done:
            return self.result
        if self._looking is not None:
            _, at = self._looking
            self._fail("removed", at, f"the record(s) before seq {at} were removed: its link names an "
                                      "unknown predecessor")
            return self.result
        pending = self._cps[self._next_cp:]
        if pending and pending[0]["size"] > self._expected:
            self._fail("removed", self._expected, f"the signed checkpoint covers {pending[0]['size']} records but "
                                                  f"only {self._expected} remain: records from seq "
                                                  f"{self._expected} were removed")
            return self.result
        self.result["size"] = self._expected
        self.result["root"] = merkle.frontier_root(self._frontier).hex()
        self.done = True
        return self.result
