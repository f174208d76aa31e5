"""The committed JSON Schemas are the promise to readers: a model change that would break them
fails here. The deliberate-break tests show the check catching each kind of break."""

from __future__ import annotations

import copy
import json

import pytest
from pydantic import Field

from civicgrid_contracts import registered_events
from civicgrid_contracts.envelope import EventPayload
from civicgrid_contracts.schemas import SCHEMA_DIR, check, file_name, incompatibilities, schema_of


def test_committed_schemas_match_the_models():
    problems = check()
    assert problems == [], "contract changes would break readers:\n" + "\n".join(problems)


def test_every_event_has_a_committed_schema_and_asyncapi_channel():
    committed = {p.name for p in SCHEMA_DIR.glob("*.json")}
    for cls in registered_events().values():
        assert file_name(cls) in committed
    doc = json.loads((SCHEMA_DIR.parent / "asyncapi.json").read_text())
    assert doc["asyncapi"].startswith("3.")
    assert "intake.requests.v1" in doc["channels"]


def _received_schema() -> dict:
    return json.loads((SCHEMA_DIR / "civicgrid.request.received.v1.json").read_text())


def test_deliberate_break_removing_a_required_field_is_caught():
    old = _received_schema()
    new = copy.deepcopy(old)
    del new["properties"]["service_code"]
    new["required"].remove("service_code")
    assert any("service_code" in p and "no longer produced" in p for p in incompatibilities(old, new))


def test_deliberate_break_changing_a_type_is_caught():
    old = _received_schema()
    new = copy.deepcopy(old)
    new["properties"]["description"] = {"type": "integer"}
    assert any("description" in p for p in incompatibilities(old, new))


def test_deliberate_break_new_required_field_is_caught():
    class Broken(EventPayload):
        event_type = "civicgrid.test.broken"
        request_id: str
        must_have: str

    class Before(EventPayload):
        event_type = "civicgrid.test.before"
        request_id: str

    problems = incompatibilities(schema_of(Before), schema_of(Broken))
    assert any("must_have" in p and "newly required" in p for p in problems)


def test_adding_an_optional_field_is_compatible():
    class Before(EventPayload):
        event_type = "civicgrid.test.before2"
        note: str

    class After(EventPayload):
        event_type = "civicgrid.test.after2"
        note: str
        extra: str | None = Field(default=None)

    assert incompatibilities(schema_of(Before), schema_of(After)) == []


PII_WORDS = ("name", "phone", "email", "e_mail", "mobile", "contact", "address_of_reporter", "id_card")
ALLOWED = {"service_name", "name_zh", "name_en"}  # names of services, not people


@pytest.mark.parametrize("cls", list(registered_events().values()), ids=lambda c: c.event_type)
def test_no_event_has_a_field_for_personal_data(cls):
    def fields(schema, prefix=""):
        for k in schema.get("properties", {}):
            yield prefix + k
        for d in schema.get("$defs", {}).values():
            for k in d.get("properties", {}):
                yield k

    for f in fields(schema_of(cls)):
        leaf = f.split(".")[-1].lower()
        if leaf in ALLOWED:
            continue
        assert not any(w in leaf for w in PII_WORDS), f"{cls.event_type}.{f} looks like personal data"
