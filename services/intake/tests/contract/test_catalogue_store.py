"""ONE contract for the catalogue's storage, run against the in-memory fake AND the real store
(``[memory]``, ``[mongo]``): what the handlers' unit tests trust of ``InMemoryCatalogue`` holds for
``Catalogue`` too — a document of the one-language shape read through the upcaster, a change
made on an older revision refused with nothing changed, each change published once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import pytest_asyncio

from civicgrid_intake.adapters.memory import InMemoryCatalogue
from civicgrid_intake.domain.catalogue import ServiceSpec
from civicgrid_intake.domain.errors import StaleRevision
from civicgrid_runtime.testing import eventually

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
OLD_SHAPE = {"_id": "stairs", "schema_version": 1, "revision": 3, "active": True, "changed_at": T0,
             "name_zh": "樓道", "name_en": "Stairs", "group": "facilities", "keywords": [], "description": "",
             "handled_by": ["grid"], "departments": [], "needs_volunteer": False, "required_qualifications": [],
             "visit_hours": None, "time_limits": {"response_hours": 4, "resolution_hours": 48}, "type": "realtime",
             "attributes": [{"code": "floor", "datatype": "singlevaluelist", "description": "Which floor?",
                             "required": True, "variable": True, "datatype_description": None, "order": 1,
                             "values": [{"key": "low", "name": "低層"}]}]}
BOTH_TEXTS = ServiceSpec(
    name_zh="樓道", name_en="Stairs", group="facilities", handled_by=["grid"],
    time_limits={"response_hours": 4, "resolution_hours": 48},
    attributes=[{"code": "floor", "datatype": "singlevaluelist", "description_zh": "哪一層？",
                 "description_en": "Which floor?", "values": [{"key": "low", "name_zh": "低層", "name_en": "Low"}]}])


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list = []

    async def publish_many(self, events) -> None:
        self.published += list(events)


@pytest.fixture(params=["memory", pytest.param("mongo", marks=pytest.mark.infra)])
def kind(request):
    return request.param, request.getfixturevalue("infra") if request.param == "mongo" else None


@pytest_asyncio.fixture
async def store(kind):
    """(the catalogue, store a raw document, the events published so far)."""
    name, infra = kind
    if name == "memory":
        catalogue = InMemoryCatalogue()

        async def raw(doc):
            catalogue.documents[doc["_id"]] = dict(doc)

        yield catalogue, raw, lambda: catalogue.published
        return
    from pymongo import AsyncMongoClient

    from civicgrid_intake.adapters.catalogue import Catalogue
    from civicgrid_intake.adapters.repository import Collections
    from civicgrid_runtime.store import OutboxRelay
    from civicgrid_runtime.testing import unique

    client = AsyncMongoClient(infra.mongodb, tz_aware=True)
    db = client[unique("intake_catalogue_contract")]
    cols = Collections(db)
    await cols.ensure_indexes()
    publisher = RecordingPublisher()
    relay = OutboxRelay(publisher, [cols.services])
    yield Catalogue(cols.services, relay, source="/test"), cols.services.insert_one, lambda: publisher.published
    await relay.stop()
    await client.drop_database(db.name)
    await client.close()


async def test_a_one_language_document_is_read_and_its_next_revision_holds_both_texts(store):
    catalogue, raw, published = store
    await raw(dict(OLD_SHAPE))
    await catalogue.refresh()
    held = catalogue.get("stairs")
    assert held.revision == 3
    assert (held.attributes[0].description_zh, held.attributes[0].description_en) == (None, "Which floor?")
    assert (held.attributes[0].values[0].name_zh, held.attributes[0].values[0].name_en) == ("低層", None)
    saved = await catalogue.update("stairs", BOTH_TEXTS, expected=3)
    assert saved.revision == 4
    await catalogue.refresh()
    assert catalogue.get("stairs").attributes[0].description_zh == "哪一層？"

    async def one_event():
        return [e.data for e in published()] if published() else None

    (event,) = await eventually(one_event, timeout=10)
    assert event.revision == 4 and event.attributes[0].description_en == "Which floor?"


async def test_a_change_made_on_an_older_revision_is_refused_and_nothing_changes(store):
    catalogue, raw, published = store
    await raw(dict(OLD_SHAPE))
    with pytest.raises(StaleRevision) as e:
        await catalogue.update("stairs", BOTH_TEXTS, expected=2)
    assert e.value.current_revision == 3
    current = await catalogue.current("stairs")
    assert current.revision == 3 and current.attributes[0].description_zh is None
    assert published() == []
    assert (await catalogue.update("stairs", BOTH_TEXTS)).revision == 4  # no revision named: saved
