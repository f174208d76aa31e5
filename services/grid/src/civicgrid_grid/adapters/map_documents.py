"""The stored shapes of a map version's geometry, and the ONE path older shapes are read through.

Shapes (``schema_version``, numbered together for the map's geometry):
- 1: ``map_chunks`` (retired): up to 2,000 areas of one level per document with their polygons as
  WKB, or 50,000 buildings per document as typed numeric arrays (int64 codes, float64 lon/lat,
  int32 index into the version's grids, int16 units). Only the start-up migration reads them,
  through ``area_chunk_documents`` / ``building_chunk_documents`` (docs/adr/0802).
- 2: one plain document per area in ``map_areas`` (code, level, parent, name, properties, the
  polygon as WKT text, its bounding box as numbers) and one per building in ``map_buildings``
  (code, grid, lon, lat, units); ``_id`` is ``<map version>:<code>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import shapely

from civicgrid_grid.domain.citymap import LEVELS, CityMap

SCHEMA_VERSION = 2
RETIRED_CHUNK_SCHEMA = 1
#: the fields a load reads (the rest is for operators)
AREA_FIELDS = ("schema_version", "code", "level", "name", "properties", "wkt")
BUILDING_FIELDS = ("schema_version", "code", "grid", "lon", "lat", "units")


# --------------------------------------------------------------------------- WKT


def _ring_wkt(ring: shapely.LinearRing) -> str:
    # repr of a float is the shortest text that reads back as the same float (GEOS's own writer
    # keeps at most 16 significant digits, so an imported coordinate would not read back exactly)
    return "(" + ", ".join(f"{c[0]!r} {c[1]!r}" for c in ring.coords) + ")"


def _rings_wkt(polygon: shapely.Polygon) -> str:
    return "(" + ", ".join(_ring_wkt(r) for r in (polygon.exterior, *polygon.interiors)) + ")"


def polygon_wkt(geometry: shapely.Geometry) -> str:
    """A Polygon or MultiPolygon as WKT text that reads back to exactly the same coordinates."""
    if geometry.geom_type == "Polygon":
        return "POLYGON EMPTY" if geometry.is_empty else f"POLYGON {_rings_wkt(geometry)}"
    if geometry.geom_type == "MultiPolygon":
        if geometry.is_empty:
            return "MULTIPOLYGON EMPTY"
        return "MULTIPOLYGON (" + ", ".join(_rings_wkt(p) for p in geometry.geoms) + ")"
    raise TypeError(f"an area is a Polygon or MultiPolygon, not a {geometry.geom_type}")


# --------------------------------------------------------------------------- writing


def _id(version: int, code: str) -> str:
    return f"{version}:{code}"


def parent_of(level: str, code: str) -> str | None:
    return None if level == "district" else code[:-3]


def area_document(version: int, level: str, code: str, name: str, properties: dict[str, Any] | None,
                  polygon: shapely.Geometry) -> dict[str, Any]:
    min_lon, min_lat, max_lon, max_lat = (float(v) for v in shapely.bounds(polygon))
    return {"_id": _id(version, code), "schema_version": SCHEMA_VERSION, "map_version": version, "code": code,
            "level": level, "parent": parent_of(level, code), "name": name, "properties": dict(properties or {}),
            "wkt": polygon_wkt(polygon),
            "bbox": {"min_lon": min_lon, "min_lat": min_lat, "max_lon": max_lon, "max_lat": max_lat}}


def building_document(version: int, code: str, grid: str, lon: float, lat: float, units: int) -> dict[str, Any]:
    return {"_id": _id(version, code), "schema_version": SCHEMA_VERSION, "map_version": version, "code": code,
            "grid": grid, "lon": lon, "lat": lat, "units": units}


def area_documents(city: CityMap, version: int) -> Iterator[dict[str, Any]]:
    for level in LEVELS:
        layer = city.layer(level)
        for i, (code, name, polygon) in enumerate(zip(layer.codes, layer.names, layer.polygons, strict=True)):
            yield area_document(version, level, code, name, layer.extra[i] if i < len(layer.extra) else None, polygon)


def building_documents(city: CityMap, version: int, start: int, stop: int) -> list[dict[str, Any]]:
    """The documents of buildings ``start:stop`` (made a slice at a time: a megacity's million
    documents at once would take a gigabyte)."""
    s = slice(start, stop)
    grid_codes = city.grids.codes
    return [building_document(version, code, grid_codes[g], lon, lat, units) for code, g, lon, lat, units in zip(
        city.bld_codes[s].astype(str).tolist(), city.bld_grid[s].tolist(), city.bld_lon[s].tolist(),
        city.bld_lat[s].tolist(), city.bld_units[s].tolist(), strict=True)]


# --------------------------------------------------------------------------- reading


#: ``{shape: step to the next}`` for map_areas / map_buildings documents; shape 2 is their first
#: (shape 1 lived in another collection and is migrated, not read, see ``*_chunk_documents``)
_UPCASTERS: dict[int, Any] = {}


def upcast_feature(doc: dict[str, Any]) -> dict[str, Any]:
    """Any stored shape of a ``map_areas`` or ``map_buildings`` document brought to the current one."""
    version = doc["schema_version"]
    while version < SCHEMA_VERSION:
        if version not in _UPCASTERS:
            raise ValueError(f"map document {doc.get('_id')} of shape {version} has no upcaster")
        doc = _UPCASTERS[version](doc)
        version = doc["schema_version"]
    if version > SCHEMA_VERSION:
        raise ValueError(f"map document {doc.get('_id')} of shape {version}, newer than this code ({SCHEMA_VERSION})")
    return doc


# --------------------------------------------------------------------------- the retired shape 1


def area_chunk_documents(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """A shape-1 area chunk (``codes``, ``names``, ``extra``, ``wkb`` of one ``layer``) as shape-2
    ``map_areas`` documents."""
    level, version = chunk["layer"], int(chunk["version"])
    codes = list(chunk["codes"])
    extra = list(chunk.get("extra") or [])
    polygons = shapely.from_wkb(np.array([bytes(b) for b in chunk["wkb"]], dtype=object))
    return [area_document(version, level, code, name, extra[i] if i < len(extra) else None, polygons[i])
            for i, (code, name) in enumerate(zip(codes, chunk["names"], strict=True))]


def building_chunk_documents(chunk: dict[str, Any], grid_codes: list[str]) -> list[dict[str, Any]]:
    """A shape-1 building chunk as shape-2 ``map_buildings`` documents; ``grid_codes`` are the
    version's grid codes in the order its grid chunks listed them (the chunk's ``grid`` indexes them)."""
    version = int(chunk["version"])
    columns = {"codes": np.int64, "lon": np.float64, "lat": np.float64, "grid": np.int32, "units": np.int16}
    arr = {k: np.frombuffer(bytes(chunk[k]), dtype=t) for k, t in columns.items()}
    return [building_document(version, code, grid_codes[g], lon, lat, units) for code, g, lon, lat, units in zip(
        arr["codes"].astype(str).tolist(), arr["grid"].tolist(), arr["lon"].tolist(), arr["lat"].tolist(),
        arr["units"].tolist(), strict=True)]


def in_slices(docs: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
