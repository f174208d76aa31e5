"""Fixtures of intake's suite: the app against the REAL broker and store, with a private database
and consumer group, driven in-process through httpx's ASGI transport (lifespan started)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from civicgrid_contracts import Envelope, topics
from civicgrid_intake.bootstrap import LIFECYCLE_TOPICS
from civicgrid_intake.entrypoints.http import build_app
from civicgrid_intake.settings import IntakeSettings
from civicgrid_runtime.auth import mint_token
from civicgrid_runtime.bus import EventPublisher
from civicgrid_runtime.testing import start_group_at_end, unique

sys.path.insert(0, str(Path(__file__).parent))  # intake_test_helpers
from intake_test_helpers import API_KEY  # noqa: E402

from civicgrid_runtime.testing import eventually  # noqa: E402,F401  (re-exported for tests)


class Ctx:
    def __init__(self, app, client: httpx.AsyncClient, settings: IntakeSettings, publisher: EventPublisher):
        self.app, self.client, self.settings, self.publisher = app, client, settings, publisher

    @property
    def service(self):
        return self.app.state.service

    @property
    def db(self):
        return self.service.runtime.db

    def token(self, role: str, area: str = "", sub: str = "staff-1") -> dict[str, str]:
        secret = self.settings.auth_secret.get_secret_value()
        return {"Authorization": f"Bearer {mint_token(secret=secret, sub=sub, role=role, area=area)}"}

    async def publish(self, payload, *, source: str = "/civicgrid/grid") -> Envelope:
        env = Envelope.wrap(payload, source=source)
        await self.publisher.publish(env)
        return env


def make_settings(infra, **over) -> IntakeSettings:
    return IntakeSettings(kafka_bootstrap_servers=infra.kafka, mongodb_url=infra.mongodb,
                          database=unique("intake_test"), consumer_group=unique("intake_test"),
                          outbox_sweep_seconds=0.3, log_json=False, **over)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ctx(infra):
    settings = make_settings(infra)
    from civicgrid_runtime.bus import ensure_topics

    await ensure_topics(infra.kafka)
    await start_group_at_end(infra.kafka, settings.group_id, list(LIFECYCLE_TOPICS))
    app = build_app(settings)
    publisher = EventPublisher(infra.kafka, client_id="intake-tests")
    await publisher.start()
    async with app.router.lifespan_context(app):
        await app.state.service.handlers.mint_api_key("tests", key=API_KEY)
        for c in app.state.runtime.consumers:
            await c.wait_assigned()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake.test") as client:
            yield Ctx(app, client, settings, publisher)
        db_name = settings.database_name
        client_ = app.state.runtime.client
        await client_.drop_database(db_name)
    await publisher.stop()


@pytest.fixture
def request_topic() -> str:
    return topics.REQUESTS.name
