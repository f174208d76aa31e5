"""The request aggregate's rules, with no storage at all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from civicgrid_grid.domain.errors import NotAllowed, NotFound
from civicgrid_grid.domain.request import Holder, RequestCase

T = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def case(status: str = "assigned", **kw) -> RequestCase:
    return RequestCase(id="r1", status=status, load_holder="A1", assignee_id="A1",
                       area={"grid": "110101001001001", "community": "110101001001"}, **kw)


def types(c: RequestCase) -> list[str]:
    return [e.event_type.rsplit(".", 1)[-1] for e in c.events]


def test_accept_only_from_assigned_or_reopened():
    c = case()
    c.accept("A1", T)
    assert (c.status, c.accepted_by, types(c)) == ("accepted", "A1", ["accepted"])
    with pytest.raises(NotAllowed, match="needs assigned, reopened"):
        c.accept("A1", T)
    case("reopened").accept("A1", T)


@pytest.mark.parametrize("status", ["resolved", "rejected", "closed", "merged"])
def test_closed_requests_refuse_every_staff_action(status):
    c = case(status)
    for action in (lambda: c.note("A1", "n", T), lambda: c.ask_volunteers("A1", T, 1, False, T),
                   lambda: c.whistle("d1", ["chengguan"], "x", T, T, by="A1"), lambda: c.resolve("A1", "n", T),
                   lambda: c.reject("A1", "x", T), lambda: c.transfer("A1", "g2", "x", Holder("B", "A", "grid", ""), T),
                   lambda: c.reassign("sup", Holder("B", "supervisor", "grid", ""), T)):
        with pytest.raises(NotAllowed):
            action()
    assert c.events == [] and c.releases == []


def test_joint_case_resolves_only_after_every_department_reported():
    c = case()
    c.whistle("d1", ["chengguan", "market_supervision"], "stall", T, T, by="A1")
    assert c.status == "in_progress" and c.dispatched_to == ["chengguan", "market_supervision"]
    assert c.events[-1].joint
    c.acknowledge("d1", "chengguan", T)
    c.acknowledge("d1", "chengguan", T)  # twice: one event
    c.report("d1", "chengguan", "removed", T)
    assert c.events[-1].all_reported is False
    with pytest.raises(NotAllowed, match="Joint case still open"):
        c.resolve("A1", "done", T)
    with pytest.raises(NotAllowed, match="already reported"):
        c.report("d1", "chengguan", "again", T)
    c.report("d1", "market_supervision", "checked", T)
    assert c.events[-1].all_reported is True
    c.resolve("A1", "done", T)
    assert types(c) == ["department_dispatched", "department_acknowledged", "department_reported",
                        "department_reported", "resolved"]
    assert c.releases == ["A1"]


def test_a_dispatch_answers_only_its_departments():
    c = case()
    c.whistle("d1", ["chengguan"], "x", T, T, by="A1")
    with pytest.raises(NotFound):
        c.report("d1", "housing", "not ours", T)
    with pytest.raises(NotFound):
        c.acknowledge("nope", "chengguan", T)


def test_transfer_records_transferred_then_assigned_and_gives_back_the_old_load():
    c = case()
    c.transfer("A1", "110101001001002", "across the road",
               Holder("B2", "A", "grid", "A: on duty", "B2", "p2", {"grid": "110101001001002"}, "transfer", 3), T)
    assert types(c) == ["transferred", "assigned"]
    assert (c.assignee_id, c.load_holder, c.area["grid"], c.status) == ("B2", "B2", "110101001001002", "assigned")
    assert c.reason.startswith("transferred from 110101001001001: across the road;")
    assert c.releases == ["A1"] and c.transfers[0]["to"] == "110101001001002"


def test_reassign_of_a_reopened_request_assigns_it_again():
    c = case("reopened")
    c.reassign("sup", Holder("C1", "supervisor", "community", "supervisor sup: busy", load_holder="C1"), T)
    assert (c.status, c.assignee_id, c.releases, types(c)) == ("assigned", "C1", ["A1"], ["reassigned"])


def test_escalation_of_a_closed_request_only_records_it():
    c = case("resolved")
    c.escalate("e1", Holder("T1", "chain", "street", "late", load_holder="T1"), T)
    assert (c.escalations, c.assignee_id, c.events) == (["e1"], "A1", [])
    o = case()
    o.escalate("e2", Holder("T1", "chain", "street", "late", load_holder="T1"), T)
    assert o.events[0].escalation_id == "e2" and o.releases == ["A1"]


def test_volunteer_delivery_resolves_only_a_volunteer_only_service():
    grid_service = case(handled_by=["grid", "volunteer"])
    grid_service.delivered("v1", 1.5, None, T)
    assert grid_service.service_delivered and grid_service.status == "assigned" and not grid_service.events
    volunteer_only = case(handled_by=["volunteer"])
    volunteer_only.delivered("v1", 1.5, "fine", T)
    assert volunteer_only.status == "resolved" and volunteer_only.events[0].resolution_note == \
        "volunteer v1 delivered 1.5 h: fine"
