"""The in-memory city map of one version: compact numpy arrays and shapely polygons, plus the
spatial index used to locate requests (built once per map version, never a scan).

Hierarchy: district (6 digits) -> street (+3) -> community (+3) -> grid (+3) -> building (+3)
-> unit (+2). Buildings are kept as numpy arrays (int64 codes, float64 lon/lat), not objects, so
a megacity's million buildings cost ~30 MB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import shapely

LEVELS = ("district", "street", "community", "grid")
CODE_LENGTH = {"district": 6, "street": 9, "community": 12, "grid": 15, "building": 18}
PARENT_KIND = {"street": "district", "community": "street", "grid": "community", "building": "grid"}


@dataclass
class Layer:
    """One polygon level of the hierarchy."""

    codes: list[str]
    parents: list[str]
    names: list[str]
    polygons: np.ndarray  # shapely geometries
    extra: list[dict] = field(default_factory=list)  # per-feature extra properties (e.g. property company)
    _index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.codes)

    def index_of(self, code: str) -> int | None:
        if self._index is None:
            self._index = {c: i for i, c in enumerate(self.codes)}
        return self._index.get(code)


@dataclass
class Located:
    """Where a request falls. ``grid`` is None when unlocated; ``street`` is then the street whose
    unlocated queue receives it."""

    method: str  # "point", "building", "address", "unlocated"
    district: str | None = None
    street: str | None = None
    community: str | None = None
    grid: str | None = None
    building: str | None = None
    reason: str = ""

    @property
    def located(self) -> bool:
        return self.grid is not None


@dataclass
class CityMap:
    districts: Layer
    streets: Layer
    communities: Layer
    grids: Layer
    bld_codes: np.ndarray  # int64, sorted
    bld_lon: np.ndarray
    bld_lat: np.ndarray
    bld_grid: np.ndarray  # int32 index into grids
    bld_units: np.ndarray  # int16
    version: int = 0
    _tree: shapely.STRtree | None = None
    _street_tree: shapely.STRtree | None = None
    _names: dict[str, str] | None = None

    # ------------------------------------------------------------------ derived
    def layer(self, kind: str) -> Layer:
        return {"district": self.districts, "street": self.streets, "community": self.communities,
                "grid": self.grids}[kind]

    def counts(self) -> dict[str, int]:
        return {"districts": len(self.districts), "streets": len(self.streets), "communities": len(self.communities),
                "grids": len(self.grids), "buildings": int(len(self.bld_codes)),
                "units": int(self.bld_units.sum()) if len(self.bld_units) else 0}

    def extent(self) -> tuple[float, float, float, float]:
        b = shapely.total_bounds(self.grids.polygons)
        return float(b[0]), float(b[1]), float(b[2]), float(b[3])

    def build_index(self) -> None:
        """Build the spatial index (STRtree over grid polygons, prepared geometries)."""
        shapely.prepare(self.grids.polygons)
        self._tree = shapely.STRtree(self.grids.polygons)
        self._street_tree = shapely.STRtree(self.streets.polygons) if len(self.streets) else None

    @property
    def tree(self) -> shapely.STRtree:
        if self._tree is None:
            self.build_index()
        return self._tree

    # ------------------------------------------------------------------ locating
    def grid_indices(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Vectorised point-in-polygon: index of the grid strictly containing each point, -1 when the
        point is outside every grid, -2 when it lies on a border (inside none strictly, touching one)."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        out = np.full(len(lon), -1, dtype=np.int64)
        if len(lon) == 0:
            return out
        pts = shapely.points(lon, lat)
        hits = self.tree.query(pts, predicate="within")
        if hits.shape[1]:
            # several strict hits can only happen with overlapping grids (rejected at import); take
            # the lowest grid index deterministically
            order = np.lexsort((hits[1], hits[0]))
            p, g = hits[0][order], hits[1][order]
            first = np.ones(len(p), dtype=bool)
            first[1:] = p[1:] != p[:-1]
            out[p[first]] = g[first]
        missing = np.flatnonzero(out == -1)
        if len(missing):
            touch = self.tree.query(pts[missing], predicate="intersects")
            if touch.shape[1]:
                out[missing[np.unique(touch[0])]] = -2
        return out

    def _path_of_grid(self, gi: int) -> dict[str, str]:
        g = self.grids.codes[gi]
        return {"grid": g, "community": g[:12], "street": g[:9], "district": g[:6]}

    def building_index(self, building_id: str) -> int | None:
        if not building_id or not building_id.isdigit() or len(building_id) != 18:
            return None
        code = np.int64(int(building_id))
        i = int(np.searchsorted(self.bld_codes, code))
        if i < len(self.bld_codes) and self.bld_codes[i] == code:
            return i
        return None

    def _street_for_point(self, lon: float, lat: float) -> str | None:
        if self._street_tree is None:
            if not len(self.streets):
                return None
            self._street_tree = shapely.STRtree(self.streets.polygons)
        pt = shapely.points(lon, lat)
        hits = self._street_tree.query(pt, predicate="intersects")
        if len(hits):
            return min(self.streets.codes[int(i)] for i in hits)
        nearest = self._street_tree.nearest(pt)
        return self.streets.codes[int(nearest)] if nearest is not None else None

    def _name_lookup(self) -> dict[str, str]:
        if self._names is None:
            names: dict[str, str] = {}
            for layer in (self.communities, self.grids):
                for code, name in zip(layer.codes, layer.names, strict=True):
                    if name:
                        names[name.lower()] = code
            self._names = names
        return self._names

    def locate(self, *, lat: float | None = None, lon: float | None = None, building_id: str | None = None,
               address_text: str | None = None) -> Located:
        """Building id first, then the point, then the address text; otherwise the street's
        unlocated queue (the street containing or nearest the point, else the first street)."""
        if building_id:
            bi = self.building_index(building_id)
            if bi is not None:
                return Located("building", building=building_id, **self._path_of_grid(int(self.bld_grid[bi])))
        border = False
        if lat is not None and lon is not None:
            gi = int(self.grid_indices(np.array([lon]), np.array([lat]))[0])
            if gi >= 0:
                return Located("point", **self._path_of_grid(gi))
            border = gi == -2
        if address_text:
            found = self.locate_text(address_text)
            if found is not None:
                return found
        street = None
        if lat is not None and lon is not None:
            street = self._street_for_point(lon, lat)
        if street is None and building_id and len(building_id) >= 9 and self.streets.index_of(building_id[:9]) is not None:
            street = building_id[:9]
        if street is None and len(self.streets):
            street = self.streets.codes[0]
        reason = ("on a grid border" if border else "outside every grid" if lat is not None and lon is not None
                  else "no usable location")
        return Located("unlocated", district=street[:6] if street else None, street=street, reason=reason)

    def locate_text(self, text: str) -> Located | None:
        for m in re.finditer(r"\d{15,18}", text):
            code = m.group(0)
            if len(code) == 18:
                bi = self.building_index(code)
                if bi is not None:
                    return Located("address", building=code, **self._path_of_grid(int(self.bld_grid[bi])))
            gi = self.grids.index_of(code[:15])
            if gi is not None:
                return Located("address", **self._path_of_grid(gi))
        low = text.lower()
        names = self._name_lookup()
        for name in sorted(names, key=len, reverse=True):
            if name in low:
                code = names[name]
                if len(code) == 15:
                    return Located("address", **self._path_of_grid(self.grids.index_of(code)))
                ci = self.communities.index_of(code)
                if ci is not None:
                    # a community named without its grid: its first grid (deterministic)
                    first = next((i for i, g in enumerate(self.grids.codes) if g.startswith(code)), None)
                    if first is not None:
                        return Located("address", **self._path_of_grid(first))
        return None

    def grid_bbox(self, grid_code: str) -> tuple[float, float, float, float] | None:
        gi = self.grids.index_of(grid_code)
        if gi is None:
            return None
        return tuple(float(v) for v in shapely.bounds(self.grids.polygons[gi]))

    def buildings_of(self, prefix: str = "", limit: int = 100, seed: int | None = None) -> list[dict]:
        """Buildings (code, lon, lat, units) under an area prefix; a seeded random sample if ``seed``."""
        idx = np.arange(len(self.bld_codes))
        if prefix:
            lo = int(prefix.ljust(18, "0"))
            hi = int(prefix.ljust(18, "9"))
            a, b = np.searchsorted(self.bld_codes, [lo, hi + 1])
            idx = idx[a:b]
        if seed is not None and len(idx) > limit:
            idx = np.sort(np.random.default_rng(seed).choice(idx, size=limit, replace=False))
        idx = idx[:limit]
        return [{"building_id": str(int(self.bld_codes[i])), "lon": float(self.bld_lon[i]),
                 "lat": float(self.bld_lat[i]), "units": int(self.bld_units[i]),
                 "grid": self.grids.codes[int(self.bld_grid[i])]} for i in idx]

    def property_company(self, community: str | None) -> str | None:
        if not community:
            return None
        ci = self.communities.index_of(community)
        if ci is None or ci >= len(self.communities.extra):
            return None
        return (self.communities.extra[ci] or {}).get("property_company")
