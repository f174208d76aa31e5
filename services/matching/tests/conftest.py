"""Fixtures of matching's integration tests (helpers live in matching_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).parent))
from matching_helpers import SECRET, Harness  # noqa: E402

from civicgrid_matching.bootstrap import CONSUMED, build  # noqa: E402
from civicgrid_matching.entrypoints.http import build_app  # noqa: E402
from civicgrid_matching.settings import MatchingSettings  # noqa: E402
from civicgrid_runtime.testing import start_group_at_end, unique  # noqa: E402


def make_harness(**overrides):
    @pytest_asyncio.fixture
    async def harness(infra, mongo):
        settings = MatchingSettings(database=unique("matching_t"), consumer_group=unique("matching_t"),
                                    auth_secret=SECRET, expiry_scan_seconds=0.2, index_refresh_seconds=1.0,
                                    **overrides)
        await start_group_at_end(infra.kafka, settings.group_id, list(CONSUMED))
        app = build_app(settings, factory=lambda: build(settings))
        async with app.router.lifespan_context(app):
            for c in app.state.service.runtime.consumers:
                await c.wait_assigned()
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                yield Harness(app, client, settings)
        await mongo.drop_database(settings.database)

    return harness


harness = make_harness(offers_at_once=1, offer_ttl_seconds=600)
harness_k3 = make_harness(offers_at_once=3, offer_ttl_seconds=600)
harness_fast_expiry = make_harness(offers_at_once=1, offer_ttl_seconds=1.0)
