"""Pure domain logic with plain objects: answers, time limits, status fold, pseudonyms, encryption."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.audit import RequestEscalated
from civicgrid_contracts.events.grid import RequestAccepted, RequestAssigned, RequestRejected, RequestResolved
from civicgrid_contracts.events.intake import RequestReopened
from civicgrid_contracts.values import AreaPath, TimeLimits
from civicgrid_intake.adapters.crypto import ContactVault, normalise_phone
from civicgrid_intake.adapters.repository import cell_of
from civicgrid_intake.domain.catalogue import DEFAULT_CATALOGUE, AnswerErrors, ServiceSpec, validate_answers
from civicgrid_intake.domain.model import StatusState, apply, open311_status

SVC = {s.code: s for s in DEFAULT_CATALOGUE}
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)  # Friday 16:00 in Beijing


def test_answers_are_validated_and_normalised():
    assert validate_answers(SVC["floating_population"], {"arrival_date": "2026-11-01T10:00:00Z", "persons": "3"}) == \
        {"arrival_date": "2026-11-01T10:00:00+00:00", "persons": 3}
    assert validate_answers(SVC["elderly_home_care"], {"care_type": ["shopping", "company", "shopping"]}) == \
        {"care_type": ["company", "shopping"]}
    with pytest.raises(AnswerErrors) as e:
        validate_answers(SVC["sanitation"], {"waste_type": "nuclear", "colour": "red"})
    assert {x["field"] for x in e.value.errors} == {"attributes/waste_type", "attributes/colour"}
    with pytest.raises(AnswerErrors):
        validate_answers(SVC["floating_population"], {"arrival_date": "soon", "persons": 2})
    with pytest.raises(AnswerErrors):
        validate_answers(SVC["floating_population"], {"arrival_date": "2026-11-01", "persons": True})


def test_default_catalogue_is_complete_and_consistent():
    codes = set(SVC)
    assert len(codes) >= 12
    for s in DEFAULT_CATALOGUE:
        if "department" in s.handled_by:
            assert s.departments
        if s.needs_volunteer:
            assert s.required_qualifications and s.visit_hours
    assert SVC["property_complaint"].departments == ["property_office"]
    with pytest.raises(ValueError):
        ServiceSpec(name_zh="x", name_en="x", group="g", handled_by=["department"],
                    time_limits=TimeLimits(response_hours=1, resolution_hours=2))


def _env(payload):
    return Envelope.wrap(payload, source="/civicgrid/grid")


def test_status_fold():
    s = StatusState(status="received")
    area = AreaPath(district="110105", street="110105001", community="110105001001", grid="110105001001001")
    s, e = apply(s, _env(RequestAssigned(request_id="r", area=area, assignee_id="a", holder="A", reason="x",
                                         map_version=1, assigned_at=T0)))
    assert (s.status, s.agency_responsible, s.area_code) == ("assigned", "110105001001001", "110105001001001")
    assert s.area_keys == ("110105", "110105001", "110105001001", "110105001001001") and e["status"] == "assigned"
    s, _ = apply(s, _env(RequestResolved(request_id="r", staff_id="a", resolution_note="done", resolved_at=T0)))
    # a late, older event never moves the request backwards
    s2, _ = apply(s, _env(RequestAccepted(request_id="r", staff_id="a", accepted_at=T0)))
    assert s2.status == "resolved"
    s3, _ = apply(s, _env(RequestEscalated(request_id="r", escalation_id="e", clock="response", step=1,
                                           from_level="grid", to_level="community", due_at=T0, escalated_at=T0,
                                           overdue_hours=1)))
    assert s3.status == "resolved" and "community" in s3.status_notes
    s4, _ = apply(s, _env(RequestReopened(request_id="r", reason="unsatisfied", reopened_at=T0)))
    s5, _ = apply(s4, _env(RequestAccepted(request_id="r", staff_id="a", accepted_at=T0)))
    assert (s4.status, s5.status) == ("reopened", "accepted")
    r, _ = apply(StatusState(status="received"), _env(RequestRejected(request_id="r", staff_id="a", reason="no",
                                                                       rejected_at=T0)))
    assert r.status == "rejected" and open311_status(r.status) == "closed" and open311_status("assigned") == "open"


def test_contact_vault():
    v = ContactVault("k1", "k2", "k3")
    assert normalise_phone("+86 138-0000-1111") == normalise_phone("13800001111") == "13800001111"
    a = v.reporter_id(phone="+86 138 0000 1111", email=None)
    assert a == v.reporter_id(phone="138-0000-1111", email="x@y.z") and a.startswith("rp_")
    assert v.reporter_id(phone=None, email=" X@Y.z ") == v.reporter_id(phone=None, email="x@y.z")
    assert v.reporter_id(phone=None, email=None) is None
    assert ContactVault("k1", "other", "k3").reporter_id(phone="13800001111", email=None) != a
    blob = v.encrypt({"name": "張三", "phone": "13800001111"}, request_id="r1")
    assert "13800001111" not in blob and v.decrypt(blob, request_id="r1") == {"name": "張三", "phone": "13800001111"}
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):
        v.decrypt(blob, request_id="r2")  # bound to its request
    t = v.request_token("r1")
    assert v.check_token("r1", t) and not v.check_token("r2", t) and not v.check_token("r1", None)


def test_nearby_points_share_their_cell():
    assert cell_of(39.9087, 116.3975) == cell_of(39.90871, 116.39751)
