"""The map's stored shapes: plain documents with WKT polygons that read back exactly, and the
retired binary chunks (shape 1) turned into the same documents the current writer makes."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from bson import BSON

from civicgrid_grid.adapters.map_documents import (
    SCHEMA_VERSION,
    area_chunk_documents,
    area_documents,
    building_chunk_documents,
    building_documents,
    polygon_wkt,
    upcast_feature,
)

from .fakes import city


def shape_1_chunks(c, version: int, areas_per_chunk: int = 2000, buildings_per_chunk: int = 50_000) -> list[dict]:
    """What the retired writer stored for a map version (it cut at 2,000 areas / 50,000 buildings)."""
    chunks = []
    for kind in ("district", "street", "community", "grid"):
        layer = c.layer(kind)
        wkb = shapely.to_wkb(layer.polygons)
        for seq, start in enumerate(range(0, len(layer.codes), areas_per_chunk)):
            s = slice(start, start + areas_per_chunk)
            chunks.append({"_id": f"{version}:{kind}:{seq}", "schema_version": 1, "version": version, "layer": kind,
                           "seq": seq, "codes": layer.codes[s], "names": layer.names[s],
                           "extra": [e or {} for e in layer.extra[s]], "wkb": [bytes(b) for b in wkb[s]]})
    for seq, start in enumerate(range(0, len(c.bld_codes), buildings_per_chunk)):
        s = slice(start, start + buildings_per_chunk)
        chunks.append({"_id": f"{version}:building:{seq}", "schema_version": 1, "version": version,
                       "layer": "building", "seq": seq, "codes": c.bld_codes[s].astype(np.int64).tobytes(),
                       "lon": c.bld_lon[s].astype(np.float64).tobytes(), "lat": c.bld_lat[s].astype(np.float64).tobytes(),
                       "grid": c.bld_grid[s].astype(np.int32).tobytes(), "units": c.bld_units[s].astype(np.int16).tobytes()})
    return chunks


def test_a_polygon_reads_back_from_its_wkt_with_exactly_the_same_coordinates():
    rng = np.random.default_rng(1)
    ring = [(float(x), float(y)) for x, y in rng.uniform(-180, 180, (40, 2))]
    hull = shapely.Polygon(ring).convex_hull  # full-precision coordinates, as an imported map has
    hole = shapely.Polygon([(116.3000001, 39.9), (116.3000002, 39.9), (116.3000002, 39.9000001)])
    square = shapely.Polygon([(116.3, 39.9), (116.4, 39.9), (116.4, 40.0), (116.3, 40.0)], holes=[hole.exterior.coords])
    for geometry in (hull, square, shapely.MultiPolygon([square, shapely.box(117, 40, 118, 41)])):
        back = shapely.from_wkt(polygon_wkt(geometry))
        assert shapely.equals_exact(back, geometry, tolerance=0), geometry.geom_type
    assert polygon_wkt(shapely.box(116, 39, 117, 40)) == "POLYGON ((117.0 39.0, 117.0 40.0, 116.0 40.0, 116.0 39.0, 117.0 39.0))"
    with pytest.raises(TypeError):
        polygon_wkt(shapely.Point(1, 2))


def test_area_and_building_documents_are_plain_named_fields():
    c = city()
    areas = list(area_documents(c, 7))
    assert len(areas) == sum(len(c.layer(k)) for k in ("district", "street", "community", "grid"))
    community = next(a for a in areas if a["level"] == "community")
    assert community["_id"] == f"7:{community['code']}" and community["parent"] == community["code"][:9]
    assert community["properties"]["property_company"] and community["wkt"].startswith("POLYGON ((")
    assert set(community["bbox"]) == {"min_lon", "min_lat", "max_lon", "max_lat"}
    assert next(a for a in areas if a["level"] == "district")["parent"] is None
    building = building_documents(c, 7, 0, 1)[0]
    assert building == {"_id": f"7:{c.bld_codes[0]}", "schema_version": SCHEMA_VERSION, "map_version": 7,
                        "code": str(c.bld_codes[0]), "grid": c.grids.codes[int(c.bld_grid[0])],
                        "lon": float(c.bld_lon[0]), "lat": float(c.bld_lat[0]), "units": int(c.bld_units[0])}
    for doc in (community, building):
        assert BSON.encode(doc) and not any(isinstance(v, bytes) for v in doc.values())


def test_the_retired_chunks_become_the_documents_the_current_writer_makes():
    c = city()
    chunks = shape_1_chunks(c, 3)
    areas = [d for chunk in chunks if chunk["layer"] != "building" for d in area_chunk_documents(chunk)]
    assert areas == list(area_documents(c, 3))
    assert building_chunk_documents(chunks[-1], c.grids.codes) == building_documents(c, 3, 0, len(c.bld_codes))


def test_the_current_shape_reads_as_it_is_and_an_unknown_one_is_refused():
    doc = building_documents(city(), 1, 0, 1)[0]
    assert upcast_feature(doc) == doc
    with pytest.raises(ValueError, match="newer"):
        upcast_feature({**doc, "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(ValueError, match="no upcaster"):
        upcast_feature({**doc, "schema_version": 1})
