"""A map as GeoJSON (RFC 7946): the export of the current map or the part under an area code."""

from __future__ import annotations

import shapely

from civicgrid_grid.domain.citymap import CityMap


def _geom(poly) -> dict:
    return shapely.geometry.mapping(poly)


def to_geojson(city: CityMap, *, include_buildings: bool = True, prefix: str = "") -> dict:
    """RFC 7946 FeatureCollection of the whole map (or the part under an area code prefix)."""
    feats: list[dict] = []
    for kind in ("district", "street", "community", "grid"):
        layer = city.layer(kind)
        for i, code in enumerate(layer.codes):
            if prefix and not (code.startswith(prefix) or prefix.startswith(code)):
                continue
            props = {"kind": kind, "code": code, "parent": layer.parents[i] or None, "name": layer.names[i]}
            if i < len(layer.extra) and layer.extra[i]:
                props.update(layer.extra[i])
            feats.append({"type": "Feature", "id": code, "geometry": _geom(layer.polygons[i]), "properties": props})
    if include_buildings:
        for b in city.buildings_of(prefix, limit=len(city.bld_codes)):
            feats.append({"type": "Feature", "id": b["building_id"],
                          "geometry": {"type": "Point", "coordinates": [b["lon"], b["lat"]]},
                          "properties": {"kind": "building", "code": b["building_id"], "parent": b["grid"],
                                         "units": b["units"]}})
    out = {"type": "FeatureCollection", "features": feats}
    if city.version:
        out["map_version"] = city.version
    return out
