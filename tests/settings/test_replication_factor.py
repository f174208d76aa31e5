"""Every topic a service creates, dead-letter topics included, asks for the platform-wide
replication factor (``CIVICGRID_TOPIC_REPLICATION_FACTOR``).

The four services' real start-up runs against the real broker. That broker has one node, so the
CreateTopics requests are captured on their way (a wrapped admin client records each topic's
replication factor, then creates it with one replica), and the registry's topics, which the shared
broker already has, are hidden from the services' first look so that each asks for all of them, as
on an empty cluster."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from civicgrid_audit.bootstrap import bootstrap as audit_bootstrap
from civicgrid_audit.settings import AuditSettings
from civicgrid_contracts import topics
from civicgrid_grid.bootstrap import bootstrap as grid_bootstrap
from civicgrid_grid.settings import GridSettings
from civicgrid_intake.bootstrap import bootstrap as intake_bootstrap
from civicgrid_intake.settings import IntakeSettings
from civicgrid_matching.bootstrap import build as matching_build
from civicgrid_matching.settings import MatchingSettings
from civicgrid_runtime import bus
from civicgrid_runtime.testing import drop_quietly, unique

pytestmark = pytest.mark.infra
REGISTRY = {spec.name for spec in topics.ALL_TOPICS}


class RecordingAdmin(AIOKafkaAdminClient):
    requested: list[NewTopic] = []

    async def list_topics(self) -> list[str]:
        listed = await super().list_topics()
        if getattr(self, "_looked", False):
            return listed
        self._looked = True
        return [t for t in listed if t not in REGISTRY]

    async def create_topics(self, new_topics, timeout_ms=None, validate_only=False):
        RecordingAdmin.requested.extend(new_topics)
        one_node = [NewTopic(t.name, t.num_partitions, 1, topic_configs=t.topic_configs) for t in new_topics]
        return await super().create_topics(one_node, timeout_ms=timeout_ms)


SERVICES = {
    "intake": (IntakeSettings, lambda s: intake_bootstrap(s)),
    "grid": (GridSettings, lambda s: grid_bootstrap(s)),
    "matching": (MatchingSettings, lambda s: matching_build(s, jobs=False)),
    "audit": (AuditSettings, lambda s: audit_bootstrap(s, scan=False, checkpoints=False)),
}


@pytest.mark.parametrize("service", list(SERVICES))
async def test_every_topic_a_service_creates_asks_for_the_platform_replication_factor(
        service, infra, mongo, monkeypatch):
    monkeypatch.setenv("CIVICGRID_TOPIC_REPLICATION_FACTOR", "3")
    monkeypatch.setattr(bus, "AIOKafkaAdminClient", RecordingAdmin)
    RecordingAdmin.requested = []
    settings_class, build = SERVICES[service]
    group, database = unique(f"rf-{service}"), unique(f"rf_{service}")
    settings = settings_class(kafka_bootstrap_servers=infra.kafka, mongodb_url=infra.mongodb, database=database,
                              consumer_group=group)
    assert settings.topic_replication_factor == 3
    svc = await build(settings)
    try:
        await svc.runtime.start()
    finally:
        await svc.runtime.stop()
        await drop_quietly(mongo, database)

    asked = {t.name: t.replication_factor for t in RecordingAdmin.requested}
    assert REGISTRY | {topics.dead_letter(group).name} <= set(asked)
    assert set(asked.values()) == {3}, asked
