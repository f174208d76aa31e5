"""The demo's backlog (deploy/local/demo_backlog.py) is what intake's import API accepts: every
planned case passes the import's rules, on the default catalogue, whatever the hour it is planned at."""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from civicgrid_intake.domain.catalogue import DEFAULT_CATALOGUE
from civicgrid_intake.domain.imports import ImportBatch, check_batch
from tests.support.platform import ROOT

sys.path.insert(0, str(ROOT / "deploy" / "local"))
import demo_backlog  # noqa: E402 - deploy/local is not a package
import simulate  # noqa: E402

SERVICES = {s.code: s for s in DEFAULT_CATALOGUE}


def demo_day() -> SimpleNamespace:
    """What the backlog reads of the simulator: the catalogue (as the API lists it) and the grids."""
    services = {s.code: s.model_dump(mode="json") for s in DEFAULT_CATALOGUE}
    return SimpleNamespace(services=services, codes=list(services), weights=[simulate.MIX.get(c, 1) for c in services],
                           grids=[{"bbox": [116.30, 39.90, 116.31, 39.91]}], answer=simulate.answer)


def test_every_planned_case_passes_the_imports_rules():
    rng = random.Random(7)
    for hour in range(0, 24, 5):  # planned at different hours of the office's day
        now = datetime(2026, 12, 2, hour, 30, tzinfo=UTC)
        cases = demo_backlog.plan(demo_day(), 300, 2.0, now, rng)
        for start in range(0, len(cases), demo_backlog.BATCH):
            batch = ImportBatch(system=demo_backlog.SYSTEM, items=[c.item for c in cases[start:start + demo_backlog.BATCH]])
            _, defects = check_batch(batch, SERVICES, now=now, window=timedelta(days=30))
            assert defects == [], defects[:3]
        assert len({c.item["external_ref"] for c in cases}) == len(cases)
        assert {c.fate for c in cases} == {"open", "accepted", "resolved"}
        assert any(c.department and c.item.get("dispatched_at") for c in cases)
        assert any(c.volunteer and c.item.get("preferred_time") for c in cases)
