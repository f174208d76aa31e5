"""Map versions in the store, swappable atomically.

An accepted map is written as chunk documents under a new version number (polygons as WKB,
buildings as packed numpy arrays), then its version document is marked complete, and finally the
single ``current`` document is flipped to it. Readers only ever follow ``current``, so a half-written
version is never seen; old versions stay and can be re-activated.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import shapely
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from civicgrid_grid.domain.citymap import CityMap, Layer

#: every map collection's documents carry it; map_chunks keeps geometry as WKB and typed arrays
#: (docs/adr/0801: plain arrays measured 4x slower to load and broke the megacity's load)
SCHEMA_VERSION = 1
AREA_CHUNK = 2000
BUILDING_CHUNK = 50_000


class MapRepository:
    def __init__(self, db: AsyncDatabase) -> None:
        self.chunks = db["map_chunks"]
        self.versions = db["map_versions"]
        self.meta = db["map_meta"]

    async def ensure_indexes(self) -> None:
        await self.chunks.create_index([("version", 1), ("layer", 1), ("seq", 1)], name="version_layer_seq")

    async def next_version(self) -> int:
        doc = await self.meta.find_one_and_update({"_id": "version_seq"}, {"$inc": {"n": 1}, "$set": {"schema_version": SCHEMA_VERSION}},
                                                  upsert=True,
                                                  return_document=ReturnDocument.AFTER)
        return int(doc["n"])

    async def save(self, city: CityMap, *, activate: bool = True, source: str = "import") -> int:
        version = await self.next_version()
        docs: list[dict[str, Any]] = []
        for kind in ("district", "street", "community", "grid"):
            layer = city.layer(kind)
            wkb = shapely.to_wkb(layer.polygons)
            for seq, start in enumerate(range(0, len(layer.codes), AREA_CHUNK)):
                end = start + AREA_CHUNK
                docs.append({"_id": f"{version}:{kind}:{seq}", "schema_version": SCHEMA_VERSION, "version": version, "layer": kind, "seq": seq,
                             "codes": layer.codes[start:end], "names": layer.names[start:end],
                             "extra": [e or {} for e in (layer.extra[start:end] if layer.extra else [])],
                             "wkb": [bytes(b) for b in wkb[start:end]]})
        n = len(city.bld_codes)
        for seq, start in enumerate(range(0, n, BUILDING_CHUNK)):
            sl = slice(start, start + BUILDING_CHUNK)
            docs.append({"_id": f"{version}:building:{seq}", "schema_version": SCHEMA_VERSION, "version": version, "layer": "building", "seq": seq,
                         "codes": city.bld_codes[sl].astype(np.int64).tobytes(),
                         "lon": city.bld_lon[sl].astype(np.float64).tobytes(),
                         "lat": city.bld_lat[sl].astype(np.float64).tobytes(),
                         "grid": city.bld_grid[sl].astype(np.int32).tobytes(),
                         "units": city.bld_units[sl].astype(np.int16).tobytes()})
        for i in range(0, len(docs), 20):
            await self.chunks.insert_many(docs[i:i + 20], ordered=False)
        await self.versions.insert_one({"_id": version, "schema_version": SCHEMA_VERSION, "complete": True, "counts": city.counts(),
                                        "extent": list(city.extent()), "source": source,
                                        "created_at": datetime.now(UTC)})
        if activate:
            await self.activate(version)
        city.version = version
        return version

    async def activate(self, version: int) -> None:
        v = await self.versions.find_one({"_id": version, "complete": True})
        if v is None:
            raise KeyError(version)
        await self.meta.update_one({"_id": "current"}, {"$set": {"version": version, "schema_version": SCHEMA_VERSION}},
                                   upsert=True)

    async def current_version(self) -> int | None:
        doc = await self.meta.find_one({"_id": "current"})
        return int(doc["version"]) if doc else None

    async def version_info(self, version: int) -> dict | None:
        return await self.versions.find_one({"_id": version})

    async def list_versions(self) -> list[dict]:
        return await self.versions.find({}, sort=[("_id", -1)]).to_list(100)

    async def load(self, version: int | None = None) -> CityMap | None:
        if version is None:
            version = await self.current_version()
            if version is None:
                return None
        layers: dict[str, Layer] = {}
        for kind in ("district", "street", "community", "grid"):
            codes, names, extra, wkb = [], [], [], []
            async for d in self.chunks.find({"version": version, "layer": kind}, sort=[("seq", 1)]):
                codes += d["codes"]
                names += d["names"]
                extra += d.get("extra") or [{} for _ in d["codes"]]
                wkb += d["wkb"]
            polys = shapely.from_wkb(np.array(wkb, dtype=object)) if wkb else np.array([], dtype=object)
            layers[kind] = Layer(codes, [c[:-3] if kind != "district" else "" for c in codes], names, polys, extra)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("codes", "lon", "lat", "grid", "units")}
        types = {"codes": np.int64, "lon": np.float64, "lat": np.float64, "grid": np.int32, "units": np.int16}
        async for d in self.chunks.find({"version": version, "layer": "building"}, sort=[("seq", 1)]):
            for k, t in types.items():
                parts[k].append(np.frombuffer(d[k], dtype=t))
        arr = {k: (np.concatenate(v) if v else np.array([], dtype=types[k])) for k, v in parts.items()}
        city = CityMap(layers["district"], layers["street"], layers["community"], layers["grid"], arr["codes"],
                       arr["lon"], arr["lat"], arr["grid"], arr["units"], version=version)
        city.build_index()
        return city
