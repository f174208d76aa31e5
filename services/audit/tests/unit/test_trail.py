"""The verification rules of one log, fed records in memory (no store): intact, and each kind of
tampering named at its first record."""

from __future__ import annotations

import copy

from civicgrid_audit.domain import merkle
from civicgrid_audit.domain.trail import LogVerification, checkpoint_message

LOG = "t:0"


def trail(n: int = 8) -> list[dict]:
    out, chain = [], merkle.GENESIS
    for s in range(n):
        raw = merkle.canonical({"id": f"e{s}", "n": s}).decode()
        leaf = merkle.leaf_hash(raw.encode())
        new = merkle.chain_hash(chain, leaf)
        out.append({"log": LOG, "seq": s, "event_id": f"e{s}", "raw": raw, "leaf": leaf.hex(), "prev": chain.hex(),
                    "chain": new.hex()})
        chain = new
    return out


def checkpoint(records: list[dict], size: int) -> dict:
    frontier: merkle.Frontier = []
    for r in records[:size]:
        frontier = merkle.frontier_append(frontier, bytes.fromhex(r["leaf"]))
    return {"size": size, "root": merkle.frontier_root(frontier).hex(), "timestamp": "t", "signature": "good"}


def verify(records: list[dict], cps: list[dict] | None = None, *, signature_ok=lambda msg, sig: sig == "good"):
    v = LogVerification(LOG, cps or [], signature_ok)
    for r in records:
        v.feed(r)
    return v.finish()


def test_an_intact_log_verifies_with_its_checkpoints():
    rs = trail()
    r = verify(rs, [checkpoint(rs, 4), checkpoint(rs, 8)])
    assert r["ok"] and r["size"] == 8 and r["checkpoints_checked"] == 2


def test_each_kind_of_tampering_is_named_at_its_first_record():
    rs = trail()
    altered = copy.deepcopy(rs)
    altered[3]["raw"] = altered[3]["raw"].replace('"n":3', '"n":4')
    assert verify(altered)["problem"]["kind"] == "altered" and verify(altered)["problem"]["seq"] == 3
    removed = rs[:3] + rs[4:]
    assert (verify(removed)["problem"]["kind"], verify(removed)["problem"]["seq"]) == ("removed", 3)
    swapped = rs[:3] + [{**rs[4], "seq": 3}, {**rs[3], "seq": 4}] + rs[5:]
    assert (verify(swapped)["problem"]["kind"], verify(swapped)["problem"]["seq"]) == ("reordered", 3)
    renumbered = rs[:3] + [{**r, "seq": r["seq"] - 1} for r in rs[4:]]
    assert (verify(renumbered)["problem"]["kind"], verify(renumbered)["problem"]["seq"]) == ("removed", 3)
    duplicate = rs[:4] + [rs[3]] + rs[4:]
    assert (verify(duplicate)["problem"]["kind"], verify(duplicate)["problem"]["seq"]) == ("inserted", 3)
    tail = verify(rs[:6], [checkpoint(rs, 8)])
    assert (tail["problem"]["kind"], tail["problem"]["seq"]) == ("removed", 6)


def test_a_forged_signature_is_named_before_any_record():
    rs = trail()
    r = verify(rs, [{**checkpoint(rs, 8), "signature": "forged"}])
    assert r["problem"]["kind"] == "bad_checkpoint_signature" and r["size"] == 0
    assert checkpoint_message(LOG, 8, "ab", "t") == b"civicgrid-audit-checkpoint\nt:0\n8\nab\nt"
