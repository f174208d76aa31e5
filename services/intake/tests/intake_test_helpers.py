from __future__ import annotations

import random

from civicgrid_contracts import Envelope, MalformedEvent
from civicgrid_runtime.testing import end_offsets, read_topic

API_KEY = "test-open311-key"
BASE_LAT, BASE_LON = 39.9087, 116.3975


def spot() -> tuple[float, float]:
    """A random point in the district, far enough from other tests' points to avoid duplicates."""
    return BASE_LAT + random.uniform(-0.2, 0.2), BASE_LON + random.uniform(-0.2, 0.2)


def body(service: str = "public_facility", **over):
    lat, lon = spot()
    b = {"service_code": service, "location": {"lat": lat, "lon": lon}, "description": "Street light broken",
         "attributes": {"facility": "streetlight"}, "channel": "app"}
    if service == "sanitation":
        b["attributes"] = {"waste_type": "household"}
    if service in ("neighbour_dispute", "greening", "other", "public_order", "street_vending"):
        b["attributes"] = {}
    b.update(over)
    return b


async def events_of(kafka: str, topic: str, *, since: dict | None = None, subject: str | None = None):
    recs = await read_topic(kafka, topic, timeout=1.0, since=since)
    out = []
    for r in recs:
        if subject is not None and r.key != subject.encode():
            continue  # other tests share the topics (some publish malformed messages on purpose)
        try:
            env = Envelope.from_kafka(r.value, r.headers)
        except MalformedEvent:
            continue
        if subject is None or env.subject == subject:
            out.append(env)
    return out


async def offsets(kafka: str, topic: str):
    return await end_offsets(kafka, topic)


def handlers_on_fakes(**settings_over):
    """Intake's handlers on the in-memory fakes (no broker, no store): for unit tests."""
    from datetime import timedelta

    from civicgrid_intake.adapters.crypto import ContactVault
    from civicgrid_intake.adapters.duplicate_index import DuplicateIndex
    from civicgrid_intake.adapters.memory import (
        InMemoryAccessTrail,
        InMemoryApiKeys,
        InMemoryCatalogue,
        InMemoryRequests,
    )
    from civicgrid_intake.handlers import IntakeHandlers
    from civicgrid_intake.settings import IntakeSettings
    from civicgrid_runtime.calendar import CalendarFollower

    settings = IntakeSettings(log_json=False, **settings_over)
    catalogue = InMemoryCatalogue.with_defaults(source=settings.source)
    vault = ContactVault(settings.contact_key.get_secret_value(), settings.reporter_key.get_secret_value(),
                         settings.token_key.get_secret_value())
    return IntakeHandlers(InMemoryRequests(), InMemoryApiKeys(), InMemoryAccessTrail(), catalogue, vault, settings,
                          duplicates=DuplicateIndex(window=timedelta(hours=settings.duplicate_window_hours),
                                                    distance_m=settings.duplicate_distance_m),
                          calendar=CalendarFollower("127.0.0.1:1"))
