"""Map versions in the store, swappable atomically.

An accepted map is written as plain documents under a new version number -- one per area
(``map_areas``) and one per building (``map_buildings``), shapes in ``map_documents`` -- then its
version document is marked complete, and finally the single ``current`` document is flipped to it.
Readers only ever follow ``current``, so a half-written version is never seen; old versions stay
and can be re-activated. Versions an earlier release kept as binary ``map_chunks`` are rewritten as
plain documents at start-up (``migrate_retired_chunks``, docs/adr/0802).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import shapely
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from civicgrid_grid.adapters.map_documents import (
    AREA_FIELDS,
    BUILDING_FIELDS,
    area_chunk_documents,
    area_documents,
    building_chunk_documents,
    building_documents,
    in_slices,
    parent_of,
    upcast_feature,
)
from civicgrid_grid.domain.citymap import LEVELS, CityMap, Layer
from civicgrid_runtime.store import insert_new

#: the shape of map_versions and map_meta documents (the geometry's is map_documents.SCHEMA_VERSION)
SCHEMA_VERSION = 1
#: documents per insert: the store takes one writer at a time, so a map import must not hold it
#: long against the request handling beside it
WRITE_BATCH = 1000
#: documents per cursor batch when loading: a reply stays a few megabytes (the embedded store
#: otherwise answers a getMore with everything left, over its 48 MB message limit for a megacity);
#: an area's WKT is up to a few kilobytes, a building's document about 150 bytes
AREA_READ_BATCH = 1000
BUILDING_READ_BATCH = 10_000


class MapIncomplete(RuntimeError):
    """A version's stored documents do not add up to its counts: it is not served half."""


class MapRepository:
    def __init__(self, db: AsyncDatabase) -> None:
        self.areas = db["map_areas"]
        self.buildings = db["map_buildings"]
        self.versions = db["map_versions"]
        self.meta = db["map_meta"]
        self.retired_chunks = db["map_chunks"]

    async def ensure_indexes(self) -> None:
        # the operator's questions: which grid is building X in; the grids of a community
        for col in (self.areas, self.buildings):
            await col.create_index([("code", 1), ("map_version", 1)], name="code_version")
        await self.areas.create_index([("map_version", 1), ("level", 1), ("parent", 1)], name="version_level_parent")
        await self.buildings.create_index([("map_version", 1), ("grid", 1)], name="version_grid")

    async def next_version(self) -> int:
        doc = await self.meta.find_one_and_update({"_id": "version_seq"}, {"$inc": {"n": 1}, "$set": {"schema_version": SCHEMA_VERSION}},
                                                  upsert=True,
                                                  return_document=ReturnDocument.AFTER)
        return int(doc["n"])

    async def save(self, city: CityMap, *, activate: bool = True, source: str = "import") -> int:
        version = await self.next_version()
        for docs in in_slices(area_documents(city, version), WRITE_BATCH):
            await self.areas.insert_many(docs, ordered=False)
        for start in range(0, len(city.bld_codes), WRITE_BATCH):
            await self.buildings.insert_many(building_documents(city, version, start, start + WRITE_BATCH), ordered=False)
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

    # ------------------------------------------------------------------ loading

    async def load(self, version: int | None = None) -> CityMap | None:
        if version is None:
            version = await self.current_version()
            if version is None:
                return None
        layers = await self._load_areas(version)
        codes, lon, lat, grid, units = await self._load_buildings(version, layers["grid"].codes)
        city = CityMap(layers["district"], layers["street"], layers["community"], layers["grid"], codes, lon, lat,
                       grid, units, version=version)
        await self._check_complete(city)
        city.build_index()
        return city

    def _stream(self, col: AsyncCollection, version: int, fields: tuple[str, ...], batch_size: int):
        # no sort: the embedded store would sort a megacity's million documents in memory; the
        # load orders by code itself
        return col.find({"map_version": version}, projection={"_id": 0, **dict.fromkeys(fields, 1)},
                        batch_size=batch_size)

    async def _load_areas(self, version: int) -> dict[str, Layer]:
        rows: dict[str, list[tuple[str, str, dict, str]]] = {level: [] for level in LEVELS}
        async for doc in self._stream(self.areas, version, AREA_FIELDS, AREA_READ_BATCH):
            doc = upcast_feature(doc)
            rows[doc["level"]].append((doc["code"], doc["name"], doc.get("properties") or {}, doc["wkt"]))
        layers = {}
        for level, found in rows.items():
            found.sort(key=lambda row: row[0])
            codes = [r[0] for r in found]
            polygons = shapely.from_wkt(np.array([r[3] for r in found], dtype=object)) if found else np.array([], dtype=object)
            layers[level] = Layer(codes, [parent_of(level, c) or "" for c in codes], [r[1] for r in found], polygons,
                                  [r[2] for r in found])
        return layers

    async def _load_buildings(self, version: int, grid_codes: list[str]) -> tuple[np.ndarray, ...]:
        """The version's buildings as arrays sorted by code, converted a cursor batch at a time (a
        megacity's million documents held as dicts would take a gigabyte)."""
        parts: list[tuple[np.ndarray, ...]] = []
        batch: list[dict[str, Any]] = []
        async for doc in self._stream(self.buildings, version, BUILDING_FIELDS, BUILDING_READ_BATCH):
            batch.append(upcast_feature(doc))
            if len(batch) == BUILDING_READ_BATCH:
                parts.append(_building_columns(batch))
                batch = []
        if batch:
            parts.append(_building_columns(batch))
        if not parts:
            return (np.array([], dtype=np.int64), np.array([], dtype=np.float64), np.array([], dtype=np.float64),
                    np.array([], dtype=np.int32), np.array([], dtype=np.int16))
        codes, lon, lat, grid, units = (np.concatenate(column) for column in zip(*parts, strict=True))
        order = np.argsort(codes, kind="stable")
        grids = np.array(grid_codes, dtype=np.int64)  # sorted: the areas are ordered by code
        grid = grid[order]
        index = np.minimum(np.searchsorted(grids, grid), max(len(grids) - 1, 0))
        if len(grids) == 0 or not np.array_equal(grids[index], grid):
            raise MapIncomplete(f"map version {version}: a building names a grid that is not in it")
        return codes[order], lon[order], lat[order], index.astype(np.int32), units[order]

    async def _check_complete(self, city: CityMap) -> None:
        info = await self.version_info(city.version)
        expected = (info or {}).get("counts") or {}
        found = city.counts()
        differ = {k: (v, found.get(k)) for k, v in expected.items() if k in found and found[k] != v}
        if differ:
            raise MapIncomplete(f"map version {city.version}: stored documents do not match its counts "
                                f"(expected, found): {differ}")

    # ------------------------------------------------------------------ the retired shape

    async def migrate_retired_chunks(self) -> list[int]:
        """Versions still kept as shape-1 ``map_chunks`` rewritten as plain documents, oldest first.

        Per version: its documents are inserted (those an interrupted run inserted already are
        kept), then its chunks deleted; a version never completed (a save interrupted) is only
        deleted. When no chunk is left the collection is dropped. Replicas starting at once may
        both run it: every step is an insert of a unique ``_id`` or a delete."""
        if not await self.retired_chunks.database.list_collection_names(filter={"name": self.retired_chunks.name}):
            return []  # a store this release created, or migrated already
        chunks = [(int(d["version"]), d["layer"], int(d["seq"]), d["_id"])
                  async for d in self.retired_chunks.find({}, {"version": 1, "layer": 1, "seq": 1})]
        migrated = []
        for version in sorted({c[0] for c in chunks}):
            if await self.versions.find_one({"_id": version, "complete": True}) is not None:
                await self._migrate_version([c for c in chunks if c[0] == version])
                migrated.append(version)
            await self.retired_chunks.delete_many({"version": version})
        if await self.retired_chunks.find_one({}, {"_id": 1}) is None:
            await self.retired_chunks.drop()
        return migrated

    async def _migrate_version(self, chunks: list[tuple[int, str, int, str]]) -> None:
        """Areas level by level, then buildings, each in the order its chunks were written (a
        building chunk's ``grid`` indexes the grids in that order); one chunk in memory at a time."""
        order = {kind: n for n, kind in enumerate((*LEVELS, "building"))}
        grid_codes: list[str] = []
        for _version, layer, _seq, chunk_id in sorted(chunks, key=lambda c: (order[c[1]], c[2])):
            chunk = await self.retired_chunks.find_one({"_id": chunk_id})
            if chunk is None:  # another replica migrated this version meanwhile (it deletes a version's chunks at once)
                return
            if layer == "building":
                await insert_new(self.buildings, building_chunk_documents(chunk, grid_codes))
                continue
            docs = area_chunk_documents(chunk)
            await insert_new(self.areas, docs)
            if layer == "grid":
                grid_codes += [d["code"] for d in docs]


def _building_columns(batch: list[dict[str, Any]]) -> tuple[np.ndarray, ...]:
    return (np.array([d["code"] for d in batch], dtype=np.int64), np.array([d["lon"] for d in batch], dtype=np.float64),
            np.array([d["lat"] for d in batch], dtype=np.float64), np.array([d["grid"] for d in batch], dtype=np.int64),
            np.array([d["units"] for d in batch], dtype=np.int16))
