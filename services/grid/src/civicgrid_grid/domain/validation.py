"""Whole-map validation of a GeoJSON import: either a complete ``CityMap`` or every defect named.

Checked: structure (kind, code form, geometry type), invalid or self-intersecting polygons,
duplicate codes, unknown parents, grids outside their community, overlapping grids and gaps
(parts of a community no grid covers) above a tolerance, buildings outside their grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from civicgrid_grid.domain.citymap import CODE_LENGTH, PARENT_KIND, CityMap, Layer

#: share of an area that may be off (slivers from rounding) before it counts as a defect
DEFAULT_TOLERANCE = 0.001


@dataclass(frozen=True)
class Defect:
    feature: int | None  # index in the FeatureCollection
    code: str | None
    kind: str  # "structure", "invalid_geometry", "duplicate_code", "unknown_parent", "outside_parent",
    #            "overlap", "gap", "building_outside_grid"
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "code": self.code, "defect": self.kind, "reason": self.reason}


class MapRejected(Exception):
    def __init__(self, defects: list[Defect]) -> None:
        super().__init__(f"{len(defects)} defects")
        self.defects = defects


def parse_and_validate(fc: Any, *, tolerance: float = DEFAULT_TOLERANCE) -> CityMap:
    """Return the map, or raise ``MapRejected`` naming every defect."""
    defects: list[Defect] = []
    if not isinstance(fc, dict) or fc.get("type") != "FeatureCollection" or not isinstance(fc.get("features"), list):
        raise MapRejected([Defect(None, None, "structure", "expected a GeoJSON FeatureCollection with 'features'")])

    areas: dict[str, dict[str, tuple[int, Any, dict]]] = {k: {} for k in ("district", "street", "community", "grid")}
    buildings: dict[str, tuple[int, float, float, dict]] = {}
    seen: dict[str, int] = {}
    for i, f in enumerate(fc["features"]):
        if not isinstance(f, dict) or f.get("type") != "Feature":
            defects.append(Defect(i, None, "structure", "not a GeoJSON Feature"))
            continue
        props = f.get("properties") or {}
        kind, code = props.get("kind"), props.get("code", f.get("id"))
        code = str(code) if code is not None else None
        if kind not in CODE_LENGTH:
            defects.append(Defect(i, code, "structure", f"unknown kind {kind!r}; one of {', '.join(CODE_LENGTH)}"))
            continue
        if not code or not code.isdigit() or len(code) != CODE_LENGTH[kind]:
            defects.append(Defect(i, code, "structure",
                                  f"a {kind} code must be {CODE_LENGTH[kind]} digits, got {code!r}"))
            continue
        if code in seen:
            defects.append(Defect(i, code, "duplicate_code", f"code {code} already used by feature {seen[code]}"))
            continue
        seen[code] = i
        geom = f.get("geometry")
        try:
            shape = shapely.geometry.shape(geom) if geom else None
        except Exception as exc:  # noqa: BLE001 - any malformed geometry is a defect of this feature
            defects.append(Defect(i, code, "structure", f"unreadable geometry: {exc}"))
            continue
        if kind == "building":
            if shape is None or shape.geom_type not in ("Point", "Polygon"):
                defects.append(Defect(i, code, "structure", "a building needs a Point or Polygon geometry"))
                continue
            p = shape if shape.geom_type == "Point" else shape.representative_point()
            buildings[code] = (i, p.x, p.y, props)
            continue
        if shape is None or shape.geom_type not in ("Polygon", "MultiPolygon"):
            defects.append(Defect(i, code, "structure", f"a {kind} needs a Polygon or MultiPolygon geometry"))
            continue
        if not shape.is_valid:
            defects.append(Defect(i, code, "invalid_geometry", f"invalid polygon: {shapely.is_valid_reason(shape)}"))
            continue
        if shape.area <= 0:
            defects.append(Defect(i, code, "invalid_geometry", "polygon has no area"))
            continue
        areas[kind][code] = (i, shape, props)

    # parents exist and codes nest
    for kind in ("street", "community", "grid"):
        pk = PARENT_KIND[kind]
        for code, (i, _shape, props) in list(areas[kind].items()):
            parent = str(props.get("parent") or code[: CODE_LENGTH[pk]])
            if parent not in areas[pk] or not code.startswith(parent):
                defects.append(Defect(i, code, "unknown_parent", f"parent {pk} {parent} is not in this map"))
                del areas[kind][code]
    for code, (i, _x, _y, props) in list(buildings.items()):
        parent = str(props.get("parent") or code[:15])
        if parent not in areas["grid"] or not code.startswith(parent):
            defects.append(Defect(i, code, "unknown_parent", f"parent grid {parent} is not in this map"))
            del buildings[code]

    # containment in the parent, overlaps and gaps, per level
    for kind in ("street", "community", "grid"):
        pk = PARENT_KIND[kind]
        children = areas[kind]
        for code, (i, shape, _p) in children.items():
            pshape = areas[pk][code[: CODE_LENGTH[pk]]][1]
            outside = shape.difference(pshape).area
            if outside > tolerance * shape.area:
                defects.append(Defect(i, code, "outside_parent",
                                      f"{kind} lies {100 * outside / shape.area:.1f}% outside its {pk} "
                                      f"{code[: CODE_LENGTH[pk]]}"))
        codes = list(children)
        if len(codes) > 1:
            polys = np.array([children[c][1] for c in codes], dtype=object)
            tree = shapely.STRtree(polys)
            pairs = tree.query(polys, predicate="intersects")
            pairs = pairs[:, pairs[0] < pairs[1]]
            if pairs.shape[1]:
                inter = shapely.area(shapely.intersection(polys[pairs[0]], polys[pairs[1]]))
                smaller = np.minimum(shapely.area(polys[pairs[0]]), shapely.area(polys[pairs[1]]))
                for a, b, ia, sm in zip(pairs[0], pairs[1], inter, smaller, strict=True):
                    if ia > tolerance * sm:
                        defects.append(Defect(children[codes[b]][0], codes[b], "overlap",
                                              f"overlaps {kind} {codes[a]} by {100 * ia / sm:.1f}% of its area"))
        # gaps: parts of each parent not covered by its children
        by_parent: dict[str, list] = {}
        for code, (_i, shape, _p) in children.items():
            by_parent.setdefault(code[: CODE_LENGTH[pk]], []).append(shape)
        for pcode, (pi, pshape, _p) in areas[pk].items():
            kids = by_parent.get(pcode)
            if not kids:
                defects.append(Defect(pi, pcode, "gap", f"{pk} {pcode} has no {kind} at all"))
                continue
            gap = pshape.difference(shapely.union_all(kids)).area
            if gap > tolerance * pshape.area:
                defects.append(Defect(pi, pcode, "gap",
                                      f"{100 * gap / pshape.area:.1f}% of {pk} {pcode} is covered by no {kind}"))

    # buildings inside their grid
    if buildings:
        bcodes = list(buildings)
        xs = np.array([buildings[c][1] for c in bcodes])
        ys = np.array([buildings[c][2] for c in bcodes])
        gpolys = np.array([areas["grid"][c[:15]][1] for c in bcodes], dtype=object)
        inside = shapely.covers(gpolys, shapely.points(xs, ys))
        for c, ok in zip(bcodes, inside, strict=True):
            if not ok:
                defects.append(Defect(buildings[c][0], c, "building_outside_grid",
                                      f"building is not inside its grid {c[:15]}"))

    if defects:
        defects.sort(key=lambda d: (d.feature if d.feature is not None else -1, d.kind))
        raise MapRejected(defects)
    return _compile(areas, buildings)


def _compile(areas: dict, buildings: dict) -> CityMap:
    layers = {}
    for kind in ("district", "street", "community", "grid"):
        codes = sorted(areas[kind])
        extra = []
        for c in codes:
            props = areas[kind][c][2]
            extra.append({k: v for k, v in props.items() if k in ("property_company",)})
        layers[kind] = Layer(codes, [c[: CODE_LENGTH[kind] - 3] if kind != "district" else "" for c in codes],
                             [str(areas[kind][c][2].get("name") or "") for c in codes],
                             np.array([areas[kind][c][1] for c in codes], dtype=object), extra)
    bcodes = sorted(buildings)
    grid_index = {c: i for i, c in enumerate(layers["grid"].codes)}
    return CityMap(
        layers["district"], layers["street"], layers["community"], layers["grid"],
        np.array([int(c) for c in bcodes], dtype=np.int64),
        np.array([buildings[c][1] for c in bcodes], dtype=np.float64),
        np.array([buildings[c][2] for c in bcodes], dtype=np.float64),
        np.array([grid_index[c[:15]] for c in bcodes], dtype=np.int32),
        np.array([int(buildings[c][3].get("units") or 1) for c in bcodes], dtype=np.int16),
    )
