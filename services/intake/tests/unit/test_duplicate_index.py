"""The in-memory duplicate index (no broker): what counts as a candidate, the merged flag, the window,
and the events of intake's topic that feed it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import h3

from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import DEFAULT_CALENDAR
from civicgrid_contracts.events.intake import RequestMerged, RequestReceived, RequestUnmerged
from civicgrid_contracts.values import Location, TimeLimits
from civicgrid_intake.adapters.duplicate_index import DuplicateIndex
from civicgrid_runtime.geo import haversine_m

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
LAT, LON = 39.9087, 116.3975
NORTH_22M = LAT + 0.0002


def index(hours: float = 72, distance_m: float = 50) -> DuplicateIndex:
    return DuplicateIndex(window=timedelta(hours=hours), distance_m=distance_m)


def received(rid: str, lat: float, lon: float, *, at: datetime = NOW, service: str = "sanitation",
             duplicate_of: str | None = None) -> Envelope:
    return Envelope.wrap(RequestReceived.starting_clocks(DEFAULT_CALENDAR,
        request_id=rid, service_code=service, service_name=service, location=Location(lat=lat, lon=lon),
        description="x", channel="app", received_at=at, duplicate_of=duplicate_of,
        time_limits=TimeLimits(response_hours=2, resolution_hours=24)), source="/civicgrid/intake")


def test_candidates_are_the_services_requests_within_the_distance_nearest_first():
    ix = index()
    ix.add("far", service_code="sanitation", lat=LAT + 0.003, lon=LON, at=NOW)  # ~330 m
    ix.add("near", service_code="sanitation", lat=NORTH_22M, lon=LON, at=NOW)
    ix.add("nearest", service_code="sanitation", lat=LAT + 0.0001, lon=LON, at=NOW)
    ix.add("other-service", service_code="greening", lat=LAT, lon=LON, at=NOW)
    found = ix.candidates("sanitation", LAT, LON, now=NOW)
    assert [rid for _, _, rid in found] == ["nearest", "near"]
    assert 10 < found[0][0] < 12 and 21 < found[1][0] < 23


def test_a_circle_across_a_cell_edge_finds_both_sides():
    ix = index()
    lat = LAT  # walk north until the cell changes: two points 2 m apart on either side of an edge
    while h3.latlng_to_cell(lat + 1e-5, LON, ix.res) == h3.latlng_to_cell(LAT, LON, ix.res):
        lat += 1e-5
    ix.add("this-side", service_code="s", lat=lat, lon=LON, at=NOW)
    ix.add("that-side", service_code="s", lat=lat + 2e-5, lon=LON, at=NOW)
    assert {rid for _, _, rid in ix.candidates("s", lat, LON, now=NOW)} == {"this-side", "that-side"}


def test_every_request_within_the_distance_is_found_whatever_the_distance():
    rng = random.Random(7)
    for distance in (10, 50, 120, 800):
        ix = index(distance_m=distance)
        points = {f"r{i}": (LAT + rng.uniform(-2, 2) * distance / 111_320, LON + rng.uniform(-2, 2) * distance / 85_000)
                  for i in range(400)}
        for rid, (la, lo) in points.items():
            ix.add(rid, service_code="s", lat=la, lon=lo, at=NOW)
        for _ in range(50):
            la, lo = LAT + rng.uniform(-1, 1) * distance / 111_320, LON + rng.uniform(-1, 1) * distance / 85_000
            expected = {rid for rid, (a, b) in points.items() if haversine_m(la, lo, a, b) <= distance}
            assert {rid for _, _, rid in ix.candidates("s", la, lo, now=NOW)} == expected


def test_merged_requests_are_not_candidates_until_unmerged():
    ix = index()
    ix.apply(received("parent", LAT, LON))
    ix.apply(received("follower", NORTH_22M, LON, duplicate_of="parent"))
    assert [rid for _, _, rid in ix.candidates("sanitation", LAT, LON, now=NOW)] == ["parent"]
    ix.apply(Envelope.wrap(RequestUnmerged(request_id="follower", from_request_id="parent", staff_id="op-1",
                                           reason="x"), source="/civicgrid/intake"))
    assert {rid for _, _, rid in ix.candidates("sanitation", LAT, LON, now=NOW)} == {
        "parent", "follower"}
    ix.apply(Envelope.wrap(RequestMerged(request_id="follower", into_request_id="parent", distance_m=22,
                                         followers=2), source="/civicgrid/intake"))
    assert [rid for _, _, rid in ix.candidates("sanitation", LAT, LON, now=NOW)] == ["parent"]


def test_the_same_request_twice_is_indexed_once_and_requests_leave_with_the_window():
    ix = index(hours=1)
    ix.apply(received("old", LAT, LON, at=NOW - timedelta(minutes=90)))
    ix.apply(received("new", LAT, LON, at=NOW - timedelta(minutes=10)))
    ix.apply(received("new", LAT, LON, at=NOW - timedelta(minutes=10)))  # its own write, then its event
    assert len(ix) == 2
    assert [rid for _, _, rid in ix.candidates("sanitation", LAT, LON, now=NOW)] == ["new"]
    assert len(ix) == 1  # pruned
    ix.prune(NOW + timedelta(hours=2))
    assert len(ix) == 0 and not ix._cells


def test_a_request_without_a_point_is_not_indexed():
    ix = index()
    ix.apply(Envelope.wrap(RequestReceived.starting_clocks(DEFAULT_CALENDAR,
        request_id="no-point", service_code="s", service_name="s", location=Location(address_text="3 Road"),
        description="x", channel="app", received_at=NOW,
        time_limits=TimeLimits(response_hours=2, resolution_hours=24)), source="/civicgrid/intake"))
    assert len(ix) == 0
