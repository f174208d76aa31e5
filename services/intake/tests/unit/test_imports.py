"""Importing open cases from the system a city replaces: the rules (pure) and the handler on the
in-memory fakes. The deadlines of an imported case count from its original received time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from intake_test_helpers import BASE_LAT, BASE_LON, handlers_on_fakes

from civicgrid_contracts.calendar import WorkingCalendar, due_at
from civicgrid_contracts.events.intake import RequestReceived
from civicgrid_intake.domain.catalogue import DEFAULT_CATALOGUE
from civicgrid_intake.domain.errors import Conflict, InvalidRequest
from civicgrid_intake.domain.imports import ImportBatch, check_batch, import_id
from civicgrid_runtime.auth import Principal

ADMIN = Principal(sub="admin-7", role="admin", area="")
SERVICES = {s.code: s for s in DEFAULT_CATALOGUE}
WINDOW = timedelta(days=30)
#: one "now" for the module's items: the same item built twice is the same case
T0 = datetime.now(UTC)


def item(ref: str = "BJ-1", *, hours_ago: float = 30, service: str = "sanitation", **over) -> dict:
    b = {"external_ref": ref, "received_at": (T0 - timedelta(hours=hours_ago)).isoformat(),
         "service_code": service, "location": {"lat": BASE_LAT, "lon": BASE_LON}, "description": "Rubbish piled up",
         "attributes": {"waste_type": "household"} if service == "sanitation" else {}, **over}
    return b


def batch(*items: dict, system: str = "hotline-12345") -> ImportBatch:
    return ImportBatch(system=system, items=list(items))


def fields(defects: list[dict]) -> list[str]:
    return [d["field"] for d in defects]


# ----------------------------------------------------------------------------- the rules


def test_a_good_batch_has_no_defect_and_ids_derive_from_system_and_reference():
    checked, defects = check_batch(batch(item("A"), item("B")), SERVICES, now=datetime.now(UTC), window=WINDOW)
    assert defects == [] and [c.request_id for c in checked] == [import_id("hotline-12345", r) for r in "AB"]
    assert import_id("hotline-12345", "A") != import_id("other-system", "A")


def test_future_and_too_old_received_times_are_defects_naming_the_item():
    now = datetime.now(UTC)
    _, defects = check_batch(batch(item("A", hours_ago=-1), item("B", hours_ago=31 * 24), item("C")), SERVICES,
                             now=now, window=WINDOW)
    assert fields(defects) == ["items/0/received_at", "items/1/received_at"]
    assert "future" in defects[0]["message"] and "import window" in defects[1]["message"]


def test_a_received_time_without_a_time_zone_is_a_defect():
    b = batch(item("A", received_at="2026-12-01T09:00:00"))
    assert fields(check_batch(b, SERVICES, now=datetime.now(UTC), window=WINDOW)[1]) == ["items/0/received_at"]


def test_a_reference_twice_in_one_batch_is_a_defect_of_the_second():
    _, defects = check_batch(batch(item("A"), item("B"), item("A")), SERVICES, now=datetime.now(UTC), window=WINDOW)
    assert fields(defects) == ["items/2/external_ref"] and "items/0" in defects[0]["message"]


def test_service_answers_and_dispatch_time_are_checked_per_item():
    _, defects = check_batch(batch(
        item("A", service="no_such_service"),
        item("B", attributes={}),  # sanitation requires waste_type
        item("C", dispatched_at=datetime.now(UTC).isoformat()),  # sanitation is not a department's
        item("D", service="street_vending", hours_ago=10, dispatched_at=(datetime.now(UTC) - timedelta(hours=11))
             .isoformat()),  # before it was received
        item("E", service="street_vending", dispatched_at=(datetime.now(UTC) - timedelta(hours=20)).isoformat()),
    ), SERVICES, now=datetime.now(UTC), window=WINDOW)
    assert fields(defects) == ["items/0/service_code", "items/1/attributes/waste_type", "items/2/dispatched_at",
                               "items/3/dispatched_at"]


# ----------------------------------------------------------------------------- the handler


@pytest.fixture
def h():
    return handlers_on_fakes()


async def test_an_imported_case_keeps_its_received_time_and_its_deadlines_count_from_it(h):
    out = await h.import_requests(batch(item("A", hours_ago=30, contact={"phone": "13912345678"})), ADMIN,
                                  reason="go-live")
    [res] = out["items"]
    assert out["imported"] == 1 and res["status"] == "imported" and res["token"]
    [env] = h.requests.published
    ev: RequestReceived = env.data
    received = ev.received_at
    assert abs((T0 - timedelta(hours=30) - received).total_seconds()) < 0.001
    assert env.time == received  # the event's time is the original one too
    limits = SERVICES["sanitation"].time_limits
    cal = WorkingCalendar(h.calendar.calendar.years)
    assert ev.response_due == due_at(received, limits.response_hours, limits.calendar, cal)
    assert ev.resolution_due == due_at(received, limits.resolution_hours, limits.calendar, cal)
    assert ev.imported_from.system == "hotline-12345" and ev.imported_from.reference == "A"
    assert ev.imported_from.imported_by == "admin-7" and ev.imported_from.batch_id == out["batch_id"]
    assert ev.channel == "hotline" and ev.duplicate_of is None
    assert "13912345678" not in str(env.to_document())
    doc = await h.get(res["request_id"])
    assert doc["received_at"] == received and doc["imported_from"]["reference"] == "A"
    assert doc["response_due"] == ev.response_due and doc["expected_at"] == ev.resolution_due
    [audited] = h.access.entries
    assert audited["action"] == "requests.import" and audited["target"] == out["batch_id"]
    assert audited["reason"] == "go-live" and audited["details"]["imported"] == 1


async def test_importing_the_same_cases_again_changes_nothing(h):
    first = await h.import_requests(batch(item("A"), item("B", hours_ago=5)), ADMIN)
    again = await h.import_requests(batch(item("A"), item("B", hours_ago=5), item("C")), ADMIN)
    assert len(h.requests.published) == 3  # A, B once; C
    assert [i["status"] for i in again["items"]] == ["already_imported", "already_imported", "imported"]
    assert [i["request_id"] for i in again["items"][:2]] == [i["request_id"] for i in first["items"]]
    assert again["imported"] == 1 and again["already_imported"] == 2


async def test_a_reference_imported_with_other_content_is_a_conflict_and_nothing_is_imported(h):
    await h.import_requests(batch(item("A", description="first")), ADMIN)
    with pytest.raises(Conflict) as exc:
        await h.import_requests(batch(item("N"), item("A", description="changed")), ADMIN)
    assert exc.value.errors[0]["field"] == "items/1/external_ref"
    assert len(h.requests.published) == 1 and len(h.access.entries) == 1


async def test_a_batch_with_a_defect_imports_nothing(h):
    with pytest.raises(InvalidRequest) as exc:
        await h.import_requests(batch(item("A"), item("B", hours_ago=-2)), ADMIN)
    assert [e["field"] for e in exc.value.errors] == ["items/1/received_at"]
    assert h.requests.published == [] and h.access.entries == []


async def test_a_legacy_dispatch_time_travels_with_the_case(h):
    dispatched = datetime.now(UTC) - timedelta(hours=20)
    await h.import_requests(batch(item("V", service="street_vending", dispatched_at=dispatched.isoformat())), ADMIN)
    [env] = h.requests.published
    assert env.data.dispatched_at == dispatched.replace(microsecond=dispatched.microsecond // 1000 * 1000)


async def test_a_new_report_next_to_an_open_imported_case_follows_it(h):
    from civicgrid_intake.domain.commands import SubmitRequest

    out = await h.import_requests(batch(item("A", hours_ago=3)), ADMIN)
    res = await h.submit(SubmitRequest(service_code="sanitation", location={"lat": BASE_LAT + 0.0001, "lon": BASE_LON},
                                       attributes={"waste_type": "household"}))
    assert res.answer["duplicate_of"] == out["items"][0]["request_id"]
