"""One regression test for each server error schemathesis found, on the running services."""

from __future__ import annotations

import httpx

from tests.security.conftest import bearer

ADMIN = bearer("admin")


def test_matching_patch_with_skills_null_is_not_a_server_error(platform):
    r = httpx.patch(f"{platform.url('matching')}/volunteers/no-such-volunteer", headers=ADMIN, timeout=60,
                    json={"skills": None, "work_unit": "x"})
    assert r.status_code == 404, r.text  # the validator lets null through; the volunteer does not exist


def test_matching_volunteer_list_refuses_a_negative_limit_and_a_skip_past_eight_bytes(platform):
    for params, field in (({"limit": -311}, "limit"), ({"skip": 68055721951706185728}, "skip")):
        r = httpx.get(f"{platform.url('matching')}/volunteers", params=params, headers=ADMIN, timeout=60)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text


def test_audit_kpis_without_from_names_the_missing_field(platform):
    r = httpx.get(f"{platform.url('audit')}/kpis", params={"dimension": "all", "to": "2000-01-01"}, headers=ADMIN,
                  timeout=60)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "from", r.text


def test_intake_token_check_with_non_ascii_token_is_not_found_rather_than_a_server_error(platform):
    base = f"{platform.url('intake')}/api/v1/requests/no-such-request"
    for r in (httpx.get(base, params={"token": "tök€n"}, timeout=60),
              httpx.post(f"{base}/rating", params={"token": "tök€n"}, json={"rating": "satisfied"}, timeout=60),
              httpx.post(f"{base}/erasure", headers={"X-Request-Token": "tök".encode("latin-1")}, timeout=60)):
        assert r.status_code == 404, r.text


def test_grid_building_sample_refuses_a_negative_seed_and_an_overlong_area(platform):
    for params, field in (({"seed": -1}, "seed"), ({"area": "1" * 19}, "area")):
        r = httpx.get(f"{platform.url('grid')}/v1/map/buildings", params=params, timeout=60)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text


def test_naive_times_are_documented_as_partial_time(platform):
    """The working calendar's periods are written as 09:00:00: JSON Schema's "time" needs an offset."""
    doc = httpx.get(f"{platform.url('intake')}/openapi.json", timeout=60).json()
    assert '"format": "time"' not in str(doc).replace("'", '"')
    period = doc["components"]["schemas"]["WorkingPeriod"]["properties"]["start"]
    assert period["format"] == "partial-time"


def test_grid_map_extent_is_a_valid_openapi_31_schema(platform):
    doc = httpx.get(f"{platform.url('grid')}/openapi.json", timeout=60).json()
    extent = doc["components"]["schemas"]["MapInfo"]["properties"]["extent"]
    assert extent["type"] == "array" and isinstance(extent["items"], dict)  # not the tuple form 3.1 refuses
    info = httpx.get(f"{platform.url('grid')}/v1/map", timeout=60).json()
    assert len(info["extent"]) == 4
