import os
from datetime import UTC, datetime, timedelta

from civicgrid_audit.domain import kpi, merkle, timeline
from civicgrid_audit.workload import request_events
from civicgrid_contracts.calendar import DEFAULT_CALENDAR


def test_frontier_root_equals_rfc6962_mth_and_proofs_verify():
    for n in (1, 2, 3, 5, 8, 13, 33):
        leaves = [merkle.leaf_hash(os.urandom(8)) for _ in range(n)]
        f = []
        for leaf in leaves:
            f = merkle.frontier_append(f, leaf)
        assert merkle.frontier_root(merkle.frontier_from_doc(merkle.frontier_to_doc(f))) == merkle.mth(leaves)
        for i in range(n):
            assert merkle.verify_inclusion(i, n, leaves[i], merkle.inclusion_proof(i, leaves), merkle.mth(leaves))


def entries_of(envs):
    return [timeline.entry_from_envelope(e, topic="t", partition=0, offset=i) for i, e in enumerate(envs)]


def test_fold_is_independent_of_delivery_order():
    import random

    envs = request_events(5, datetime(2026, 10, 1, tzinfo=UTC), random.Random(1))
    a = timeline.fold(entries_of(envs))
    shuffled = list(envs)
    random.Random(3).shuffle(shuffled)
    b = timeline.fold(entries_of(shuffled))
    assert a == b and a["received_at"]


def test_contribution_differences_sum_to_the_final_contribution():
    import random

    c = DEFAULT_CALENDAR
    envs = request_events(2, datetime(2026, 10, 1, tzinfo=UTC), random.Random(4))
    total: dict[str, dict[str, int]] = {}
    seen = []
    old: dict = {}
    for e in envs[::-1]:  # worst order: newest first
        seen.append(e)
        new = kpi.contributions(timeline.fold(entries_of(seen)), c)
        for cid, m in kpi.diff(new, old).items():
            kpi.add_into(total.setdefault(cid, {}), m)
        old = new
    final = kpi.contributions(timeline.fold(entries_of(envs)), c)
    assert {k: {m: v for m, v in d.items() if v} for k, d in total.items() if any(d.values())} == final


def test_quantiles_from_log_buckets():
    m = {f"hres_{kpi.bucket_of(h)}": 0 for h in (1,)}
    for h in (1, 2, 3, 10, 50):
        key = f"hres_{kpi.bucket_of(h)}"
        m[key] = m.get(key, 0) + 1
    assert kpi.quantile(m, "hres", 0.5) == 4.0  # 3 h lies in the (2.83, 4] bucket
    assert kpi.quantile(m, "hres", 0.9) == 64.0
    assert kpi.buckets_for("2026-10-01", "2026-12-31")[::45] == ["2026-10-01", "2026-11-15", "2026-12-30"]
    assert len(kpi.buckets_for("2026-10-01", "2026-12-31")) == 92
    assert timedelta(0) == timedelta(0)
