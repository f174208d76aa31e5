"""Certificate-Transparency-style hashing (RFC 6962 / 9162), pure.

- leaf hash  = SHA-256(0x00 || canonical event bytes)
- node hash  = SHA-256(0x01 || left || right)
- chain hash = SHA-256(previous chain hash || leaf hash) (genesis: 32 zero bytes), so a record
  names its predecessor and removal, insertion and reordering break a link at the exact place;
- the Merkle Tree Head of the first n leaves (RFC 6962 MTH) is computed incrementally from a
  *frontier* of at most log2(n) perfect subtree roots, so appending and checkpointing never need
  the whole log in memory; inclusion proofs follow RFC 6962 section 2.1.1.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS = bytes(32)


def canonical(doc: dict[str, Any]) -> bytes:
    """Canonical JSON bytes of a stored event: sorted keys, no spaces, UTF-8, times in UTC ISO."""

    def norm(v: Any) -> Any:
        if isinstance(v, datetime):
            return (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [norm(x) for x in v]
        return v

    return canonical_json(norm(doc))


def canonical_json(doc: dict[str, Any]) -> bytes:
    """``canonical`` of a document that holds only JSON values already (no datetimes): orjson,
    several times faster than ``json.dumps`` on the replay's path."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def chain_hash(prev: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(prev + leaf).digest()


Frontier = list[tuple[int, bytes]]  # (subtree size, root) from left to right, sizes strictly decreasing


def frontier_append(frontier: Frontier, leaf: bytes) -> Frontier:
    f = list(frontier)
    f.append((1, leaf))
    while len(f) >= 2 and f[-1][0] == f[-2][0]:
        (n, left), (_, right) = f[-2], f[-1]
        f[-2:] = [(2 * n, node_hash(left, right))]
    return f


def frontier_root(frontier: Frontier) -> bytes:
    if not frontier:
        return hashlib.sha256(b"").digest()
    h = frontier[-1][1]
    for _, left in reversed(frontier[:-1]):
        h = node_hash(left, h)
    return h


def frontier_to_doc(frontier: Frontier) -> list[str]:
    """As ``"size:roothex"`` strings (the store does not take nested arrays)."""
    return [f"{n}:{h.hex()}" for n, h in frontier]


def frontier_from_doc(doc: list[str] | None) -> Frontier:
    out = []
    for item in doc or []:
        n, h = item.split(":")
        out.append((int(n), bytes.fromhex(h)))
    return out


def mth(leaves: list[bytes]) -> bytes:
    """Merkle Tree Hash of a list of leaf hashes (RFC 6962), recursive definition."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def inclusion_proof(index: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n <= 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if index < k:
        return inclusion_proof(index, leaves[:k]) + [mth(leaves[k:])]
    return inclusion_proof(index - k, leaves[k:]) + [mth(leaves[:k])]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2 verification."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
