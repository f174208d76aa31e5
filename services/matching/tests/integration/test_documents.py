"""What the store holds after a realistic flow: one document of every collection, plain (named
fields, no binary blobs) and versioned; and a first-version document is rewritten in the current
shape by its next save."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bson import Binary

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.catalogue import ServiceDefined
from civicgrid_contracts.events.intake import RequestRated
from civicgrid_contracts.values import TimeLimits

sys.path.insert(0, str(Path(__file__).parents[1]))
from matching_helpers import as_volunteer, requested, volunteer_body, wait_for  # noqa: E402

pytestmark = pytest.mark.infra
MATCHING_COLLECTIONS = {"volunteers", "schedules", "matches", "deadlines", "hours", "services"}


def blobs(value, path="") -> list[str]:
    """Paths of binary values (a compressed or packed blob would be one)."""
    if isinstance(value, (bytes, Binary)):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in blobs(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in blobs(v, f"{path}[{i}]")]
    return []


async def test_every_collection_holds_plain_versioned_documents_after_a_flow(infra, harness):
    h = harness
    await h.publisher.publish(Envelope.wrap(ServiceDefined(
        request_id="elderly_care_home", service_code="elderly_care_home", name_zh="居家養老", name_en="Home care",
        group="volunteer", handled_by=("volunteer",), needs_volunteer=True, required_qualifications=(),
        visit_hours=2, time_limits=TimeLimits(response_hours=4, resolution_hours=48), revision=1,
        changed_at=datetime.now(UTC)), source="/civicgrid/intake"))
    await h.register(volunteer_body("p-1", north_m=100, party_member=True, work_unit="School"),
                     volunteer_body("p-2", north_m=300))
    served, waiting = requested(), requested()
    await h.publisher.publish(served)
    await h.publisher.publish(waiting)
    m = await h.match(served.subject, "open")
    await h.match(waiting.subject, "open")
    oid = next(o.offer_id for o in m.offers)
    vid = m.offers[0].volunteer_id
    assert (await h.http.post(f"/me/offers/{oid}/accept", headers=as_volunteer(vid))).status_code == 200
    for step in ("check-in", "complete"):
        r = await h.http.post(f"/me/assignments/{served.subject}/{step}", headers=as_volunteer(vid))
        assert r.status_code == 200, r.text
    await h.publisher.publish(Envelope.wrap(RequestRated(request_id=served.subject, rating="satisfied",
                                                         rated_at=datetime.now(UTC)), source="/civicgrid/intake"))
    await wait_for(lambda: h.db.hours.find_one({"rating": "satisfied"}))
    await wait_for(lambda: h.db.services.find_one({}))
    names = set(await h.db.list_collection_names())
    assert MATCHING_COLLECTIONS <= names
    for name in sorted(MATCHING_COLLECTIONS):
        doc = await h.db[name].find_one({})
        print(f"{name}: {doc}")
        assert doc is not None, name
        assert doc.get("schema_version") == 2, (name, doc)
        assert blobs(doc) == [], (name, blobs(doc))


async def test_a_first_version_document_is_rewritten_in_the_current_shape_by_its_next_save(infra, harness):
    h = harness
    t = datetime.now(UTC).replace(microsecond=0)
    await h.db.volunteers.insert_one({
        "_id": "old-1", "name": "Old", "community": "c-01", "lat": 39.9, "lon": 116.3, "skills": ["care"],
        "qualifications": {}, "stats": {"declines": 1}, "ratings": {"req\uff0e1": 1.0}, "serves": {},
        "created_at": t, "updated_at": t, "created_by": "s"})
    r = await h.http.patch("/volunteers/old-1", json={"on_duty": False},
                           headers={"Authorization": (await _staff())})
    assert r.status_code == 200, r.text
    assert r.json()["rating_count"] == 1 and r.json()["stats"]["declines"] == 1
    doc = await h.db.volunteers.find_one({"_id": "old-1"})
    assert doc["schema_version"] == 2 and doc["version"] == 2 and "v" not in doc
    assert doc["ratings"] == [{"request_id": "req.1", "points": 1.0}] and doc["on_duty"] is False


async def _staff() -> str:
    from matching_helpers import staff

    return staff()["Authorization"]
