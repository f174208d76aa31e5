"""The catalogue's questions in Chinese and English and the revision an administrator's save names,
on the in-memory fakes (no infrastructure): the stored shape's upcaster, the admin API's field
rules, If-Match and its 412, Open311's language. The real store's side: tests/contract and
tests/integration/test_native_api.py."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from intake_test_helpers import handlers_on_fakes
from pydantic import ValidationError

from civicgrid_intake.adapters import documents
from civicgrid_intake.adapters.catalogue import from_document, service_event
from civicgrid_intake.adapters.memory import InMemoryCatalogue
from civicgrid_intake.domain.catalogue import ServiceSpec, written_in
from civicgrid_intake.domain.errors import StaleRevision
from civicgrid_intake.domain.revisions import require_revision
from civicgrid_intake.entrypoints import open311
from civicgrid_intake.entrypoints.http import catalogue_router, install_error_handlers
from civicgrid_runtime.auth import mint_token
from civicgrid_runtime.problems import install_problem_handlers

SECRET = "unit-test-secret-of-enough-length-0123456789"
ADMIN = {"Authorization": f"Bearer {mint_token(secret=SECRET, sub='admin-1', role='admin')}"}
T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)


def question(**over) -> dict:
    return {"code": "floor", "datatype": "singlevaluelist", "description_zh": "哪一層？", "description_en": "Which floor?",
            "required": True, "values": [{"key": "low", "name_zh": "低層", "name_en": "Low"},
                                         {"key": "high", "name_zh": "高層", "name_en": "High"}], **over}


def spec(*attributes: dict, **over) -> dict:
    return {"name_zh": "樓道照明", "name_en": "Stairwell lights", "group": "facilities", "handled_by": ["grid"],
            "time_limits": {"response_hours": 4, "resolution_hours": 48}, "attributes": list(attributes), **over}


def v1_document(**attribute) -> dict:
    """A ``services`` document as intake wrote it before questions had two languages."""
    return {"_id": "stairs", "schema_version": 1, "revision": 3, "active": True, "changed_at": T0,
            "name_zh": "樓道", "name_en": "Stairs", "group": "facilities", "keywords": [], "description": "",
            "handled_by": ["grid"], "departments": [], "needs_volunteer": False, "required_qualifications": [],
            "visit_hours": None, "time_limits": {"response_hours": 4, "resolution_hours": 48}, "type": "realtime",
            "attributes": [{"code": "floor", "datatype": "singlevaluelist", "required": True, "variable": True,
                            "order": 1, **attribute}]}


# ----------------------------------------------------------------------------- the stored shape


def test_a_one_language_question_becomes_the_text_of_the_language_it_is_written_in():
    doc = documents.upcast(documents.SERVICES, v1_document(
        description="Which floor?", datatype_description=None,
        values=[{"key": "low", "name": "Low"}, {"key": "high", "name": "高層"}]))
    assert doc["schema_version"] == 2
    a = doc["attributes"][0]
    assert (a["description_zh"], a["description_en"]) == (None, "Which floor?")
    assert "description" not in a and "datatype_description" not in a
    assert (a["datatype_description_zh"], a["datatype_description_en"]) == (None, None)
    assert a["values"] == [{"key": "low", "name_zh": None, "name_en": "Low"},
                           {"key": "high", "name_zh": "高層", "name_en": None}]


def test_a_chinese_question_an_administrator_wrote_becomes_the_chinese_text():
    a = documents.upcast(documents.SERVICES, v1_document(description="哪一層？", datatype_description="選一個",
                                                         values=[{"key": "low", "name": "低層"}]))["attributes"][0]
    assert (a["description_zh"], a["description_en"]) == ("哪一層？", None)
    assert (a["datatype_description_zh"], a["datatype_description_en"]) == ("選一個", None)


def test_a_version_0_document_goes_the_same_one_path():
    doc = v1_document(description="Which floor?", values=[{"key": "low", "name": "Low"}])
    del doc["schema_version"]
    assert documents.upcast(documents.SERVICES, doc)["attributes"][0]["description_en"] == "Which floor?"


def test_a_held_question_in_one_language_is_read_and_asked_in_that_language_to_everyone():
    svc = from_document(v1_document(description="Which floor?", values=[{"key": "low", "name": "Low"}]))
    a = svc.attributes[0]
    assert a.question("zh") == a.question("en") == "Which floor?"
    assert a.values[0].name("zh") == "Low"


def test_the_language_of_a_text():
    assert written_in("環境衛生 / sanitation") == "zh" and written_in("Which floor?") == "en"


# ----------------------------------------------------------------------------- the admin's rules


@pytest.mark.parametrize("attribute,field", [
    (question(description_en=""), ("attributes", 0, "description_en")),
    ({k: v for k, v in question().items() if k != "description_zh"}, ("attributes", 0, "description_zh")),
    (question(values=[{"key": "low", "name_zh": "低層"}]), ("attributes", 0, "values", 0, "name_en")),
    (question(description="Which floor?"), ("attributes", 0, "description")),  # the old single text
])
def test_a_question_needs_both_texts_and_the_refusal_names_the_field(attribute, field):
    with pytest.raises(ValidationError) as e:
        ServiceSpec(**spec(attribute))
    assert field in [err["loc"] for err in e.value.errors()]


def test_the_event_carries_each_question_in_both_languages():
    catalogue = InMemoryCatalogue.with_defaults()
    env = service_event(catalogue.get("sanitation"), source="/civicgrid/intake")
    (q,) = env.data.attributes
    assert (q.description_zh, q.description_en) == ("是什麼垃圾？", "What kind of waste?")
    assert q.values[0].name_zh == "生活垃圾" and q.values[0].name_en == "Household waste"


def test_every_shipped_question_and_answer_has_both_texts():
    for svc in InMemoryCatalogue.with_defaults().all(include_retired=True):
        for a in svc.attributes:
            assert a.description_zh and a.description_en, (svc.code, a.code)
            assert written_in(a.description_zh) == "zh" and written_in(a.description_en) == "en"
            assert all(v.name_zh and v.name_en for v in a.values), (svc.code, a.code)


# ----------------------------------------------------------------------------- the revision a save names


def test_a_change_made_on_an_older_revision_is_refused_naming_both():
    require_revision("service 'x'", 4, 4)
    require_revision("service 'x'", 4, None)  # no revision named: saved over whatever is there
    with pytest.raises(StaleRevision) as e:
        require_revision("service 'x'", 5, 4)
    assert e.value.status == 412 and e.value.current_revision == 5
    assert e.value.errors == [{"field": "If-Match", "in": "header",
                               "message": "revision 4 is not the current one (5)"}]


async def test_the_second_of_two_administrators_editing_one_service_is_refused_and_nothing_changes():
    catalogue = InMemoryCatalogue.with_defaults()
    first = ServiceSpec(**spec(question()))
    second = ServiceSpec(**spec(question(description_en="Which storey?")))
    saved = await catalogue.update("greening", first, expected=1)
    assert saved.revision == 2
    with pytest.raises(StaleRevision):
        await catalogue.update("greening", second, expected=1)
    assert catalogue.get("greening").attributes[0].description_en == "Which floor?"
    assert from_document(catalogue.documents["greening"]).revision == 2
    assert [e.data.revision for e in catalogue.published] == [2]
    with pytest.raises(StaleRevision):
        await catalogue.retire("greening", expected=1)
    assert (await catalogue.retire("greening", expected=2)).active is False


# ----------------------------------------------------------------------------- HTTP


@pytest.fixture
async def http():
    handlers = handlers_on_fakes()
    app = FastAPI()
    app.state.service = SimpleNamespace(handlers=handlers, catalogue=handlers.catalogue)
    app.state.settings = SimpleNamespace(jurisdiction_id="civicgrid")
    app.state.auth_secret = SECRET
    install_problem_handlers(app)
    install_error_handlers(app)
    app.include_router(catalogue_router)
    app.include_router(open311.router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
        yield client


async def test_a_service_read_names_its_revision_and_a_save_on_it_goes_through(http):
    r = await http.get("/api/v1/services/greening")
    assert r.headers["etag"] == '"1"'
    r = await http.put("/api/v1/services/greening", json=spec(question()), headers={**ADMIN, "If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["revision"] == 2 and r.headers["etag"] == '"2"'
    assert r.json()["attributes"][0]["description_zh"] == "哪一層？"


async def test_a_stale_save_is_a_412_naming_if_match_and_the_current_revision(http):
    await http.put("/api/v1/services/greening", json=spec(), headers={**ADMIN, "If-Match": '"1"'})
    r = await http.put("/api/v1/services/greening", json=spec(question()), headers={**ADMIN, "If-Match": '"1"'})
    assert r.status_code == 412 and r.headers["content-type"].startswith("application/problem+json")
    p = r.json()
    assert p["current_revision"] == 2 and r.headers["etag"] == '"2"'
    assert p["errors"] == [{"field": "If-Match", "in": "header", "message": "revision 1 is not the current one (2)"}]
    assert "revision 2" in p["detail"] and "revision 1" in p["detail"]
    assert (await http.get("/api/v1/services/greening")).json()["attributes"] == []  # nothing changed


async def test_a_save_without_if_match_is_saved_over_what_is_there(http):
    r = await http.put("/api/v1/services/greening", json=spec(question()), headers=ADMIN)
    assert r.status_code == 200 and r.json()["revision"] == 2


async def test_an_if_match_that_is_no_etag_is_refused_naming_it(http):
    r = await http.put("/api/v1/services/greening", json=spec(), headers={**ADMIN, "If-Match": "yesterday"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "If-Match" and r.json()["errors"][0]["in"] == "header"


async def test_a_question_without_its_english_text_is_refused_naming_the_field(http):
    r = await http.put("/api/v1/services/greening", json=spec(question(description_en=None)), headers=ADMIN)
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["attributes/0/description_en"]


@pytest.mark.parametrize("headers,params,expected", [
    ({}, {}, ("What kind of waste?", "Household waste")),  # what Open311 clients always got
    ({"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}, {}, ("是什麼垃圾？", "生活垃圾")),
    ({"Accept-Language": "fr-FR, en;q=0.5, zh;q=0.4"}, {}, ("What kind of waste?", "Household waste")),
    ({"Accept-Language": "en"}, {"locale": "zh_CN"}, ("是什麼垃圾？", "生活垃圾")),
])
async def test_open311_asks_the_question_in_the_clients_language(http, headers, params, expected):
    r = await http.get("/open311/v2/services/sanitation.json", headers=headers, params=params)
    assert r.status_code == 200, r.text
    (a,) = r.json()["attributes"]
    assert (a["description"], a["values"][0]["name"]) == expected


async def test_a_shipped_service_stored_in_one_language_gets_its_chinese_texts_where_still_shipped():
    catalogue = InMemoryCatalogue()
    doc = dict(v1_document(description="What kind of waste?", values=[
        {"key": "household", "name": "Household waste"}, {"key": "bulky", "name": "Big things"}]),
        _id="sanitation", revision=1)
    doc["attributes"][0]["code"] = "waste_type"
    mine = dict(v1_document(description="Which floor is it on?", values=[{"key": "low", "name": "Low"}]),
                _id="public_facility", revision=5)
    mine["attributes"][0]["code"] = "facility"  # reworded by an administrator: not the shipped text
    catalogue.documents = {"sanitation": doc, "public_facility": mine}
    await catalogue.refresh()
    assert await catalogue.complete_shipped_texts() == 1
    a = catalogue.get("sanitation").attributes[0]
    assert (a.description_zh, a.description_en) == ("是什麼垃圾？", "What kind of waste?")
    assert [(v.name_zh, v.name_en) for v in a.values] == [("生活垃圾", "Household waste"), (None, "Big things")]
    assert catalogue.get("sanitation").revision == 2 and [e.data.revision for e in catalogue.published] == [2]
    assert catalogue.get("public_facility").attributes[0].description_zh is None
    assert await catalogue.complete_shipped_texts() == 0, "once"


async def test_a_refresh_read_before_this_replicas_own_change_does_not_undo_it():
    """The 5-second refresh reads the store; a change this replica saved while that read was under
    way (a new service, a new revision) stays in its catalogue."""
    catalogue = InMemoryCatalogue.with_defaults()
    before = [dict(d) for d in await catalogue._documents()]
    await catalogue.create("late_added", ServiceSpec(**spec()))
    changed = await catalogue.retire("sanitation")
    catalogue._documents = lambda: _returning(before)  # the refresh's read, taken before both changes
    await catalogue.refresh()
    assert catalogue.get("late_added") is not None
    assert catalogue.get("sanitation").revision == changed.revision and not catalogue.get("sanitation").active


async def _returning(documents):
    return documents
