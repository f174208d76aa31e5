"""Pure domain logic: the A/B/chain plan, reasons, locating, and map validation of every defect kind."""

from __future__ import annotations

import copy
import json
from datetime import date

import pytest

from civicgrid_grid.demo.citygen import generate
from civicgrid_grid.domain.assignment import Staff, line_for, plan, reason_text
from civicgrid_grid.domain.geojson import to_geojson
from civicgrid_grid.domain.validation import MapRejected, parse_and_validate

TODAY = date(2026, 11, 28)
POST = {"_id": "p1", "a": "A1", "b": "B1", "level": "grid"}
CHAIN = [("grid", "H"), ("community", "C"), ("street", "T"), ("district", "D")]


def staff(**over):
    base = {s: Staff(s) for s in ("A1", "B1", "H", "C", "T", "D")}
    base.update(over)
    return base


def test_plan_orders_a_b_then_chain_and_top_is_unlimited():
    c = plan(POST, staff(), CHAIN, TODAY)
    assert [x.staff_id for x in c] == ["A1", "B1", "H", "C", "T", "D"]
    assert [x.holder for x in c[:3]] == ["A", "B", "chain"]
    assert c[-1].limited is False and all(x.limited for x in c[:-1])


def test_leave_and_off_duty_reasons():
    c = plan(POST, staff(A1=Staff("A1", "leave", "2026-12-03"), B1=Staff("B1", "off")), CHAIN, TODAY)
    assert c[0].skip == "on leave until 2026-12-03" and c[1].skip == "off duty" and c[2].skip is None
    assert reason_text(c[1], ["A on leave until 2026-12-03"]) == "B: A on leave until 2026-12-03"
    assert reason_text(c[2], ["A x", "B y"]) == "chain (grid branch head): A x, B y"


def test_leave_in_the_past_is_over():
    c = plan(POST, staff(A1=Staff("A1", "leave", "2026-01-01")), CHAIN, TODAY)
    assert c[0].skip is None


def test_line_of_work():
    assert line_for("elderly care", "home_visit") == "care"
    assert line_for("environment", "litter") == "general"


def test_locate_point_building_address_and_unlocated():
    city = generate("street", 5)
    b = city.buildings_of("", limit=1)[0]
    loc = city.locate(lat=b["lat"], lon=b["lon"])
    assert loc.method == "point" and loc.grid == b["grid"]
    assert city.locate(building_id=b["building_id"]).grid == b["grid"]
    assert city.locate(address_text=f"Building {b['building_id']} unit 2").grid == b["grid"]
    assert city.locate(address_text=f"near {city.grids.names[3]} gate").grid == city.grids.codes[3]
    out = city.locate(lat=10.0, lon=10.0)
    assert out.method == "unlocated" and out.street == city.streets.codes[0] and out.grid is None
    # a shared vertex of the lattice is on a border: deterministic, unlocated, never dropped
    x, y = city.grids.polygons[0].exterior.coords[2]
    border = city.locate(lat=y, lon=x)
    assert border.method == "unlocated" and border.reason == "on a grid border"


def test_generator_is_reproducible_and_anchored():
    a, b = generate("district", 9), generate("district", 9)
    assert a.grids.codes == b.grids.codes and (a.bld_lon == b.bld_lon).all()
    x0, y0, _, _ = a.extent()
    assert (round(x0, 4), round(y0, 4)) == (116.30, 39.90)
    assert len(a.grids.codes[0]) == 15 and a.grids.codes[0].startswith(a.communities.codes[0])


def test_valid_map_round_trips_through_geojson():
    city = generate("street", 2)
    again = parse_and_validate(to_geojson(city))
    assert again.counts() == city.counts()
    assert again.grids.codes == city.grids.codes


def broken_map() -> tuple[dict, dict[str, str]]:
    """A street map with one defect of every kind; returns it and {code: defect kind} expected."""
    fc = json.loads(json.dumps(to_geojson(generate("street", 4))))  # plain lists, as a client sends
    feats = fc["features"]
    grids = [f for f in feats if f["properties"]["kind"] == "grid"]
    expected: dict[str, str] = {}
    # 1. self-intersecting polygon (bow tie)
    g = grids[0]
    ring = g["geometry"]["coordinates"][0]
    ring[1], ring[2] = ring[2], ring[1]
    expected[g["properties"]["code"]] = "invalid_geometry"
    # 2. grid outside its community: shift far east
    g = grids[7]
    g["geometry"]["coordinates"] = [[[x + 0.05, y] for x, y in g["geometry"]["coordinates"][0]]]
    expected[g["properties"]["code"]] = "outside_parent"
    # 3. overlap: a copy of grid 13's polygon under a new code in the same community
    src = grids[13]
    dup_shape = copy.deepcopy(src)
    code = src["properties"]["code"][:12] + "099"
    dup_shape["properties"]["code"] = dup_shape["id"] = code
    feats.append(dup_shape)
    expected[code] = "overlap"
    # 4. duplicate code
    dup = copy.deepcopy(grids[20])
    feats.append(dup)
    expected[dup["properties"]["code"]] = "duplicate_code"
    # 5. unknown parent
    orphan = copy.deepcopy(grids[25])
    orphan["properties"]["code"] = orphan["id"] = "110101009009001"
    orphan["properties"]["parent"] = "110101009009"
    feats.append(orphan)
    expected["110101009009001"] = "unknown_parent"
    # 6. gap: remove a grid so its community is not covered
    gone = grids[30]
    feats.remove(gone)
    expected[gone["properties"]["code"][:12]] = "gap"
    # 7. a building outside its grid
    bld = next(f for f in feats if f["properties"]["kind"] == "building"
               and f["properties"]["parent"] == grids[2]["properties"]["code"])
    bld["geometry"]["coordinates"] = [bld["geometry"]["coordinates"][0] + 0.03, bld["geometry"]["coordinates"][1]]
    expected[bld["properties"]["code"]] = "building_outside_grid"
    # 8. structure: a bad code
    bad = copy.deepcopy(grids[3])
    bad["properties"]["code"] = bad["id"] = "12x"
    feats.append(bad)
    expected["12x"] = "structure"
    return fc, expected


def test_every_defect_kind_is_named():
    fc, expected = broken_map()
    with pytest.raises(MapRejected) as info:
        parse_and_validate(fc)
    got = {(d.code, d.kind) for d in info.value.defects}
    for code, kind in expected.items():
        assert (code, kind) in got, (code, kind, sorted(got))
    assert all(d.reason for d in info.value.defects)
