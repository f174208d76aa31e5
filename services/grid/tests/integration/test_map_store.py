"""Map versions on the real store: plain documents per area and building that load back into the
same map (a cursor batch at a time), answer the operator's questions, and the retired binary chunks
of an earlier release rewritten as such documents at start-up (docs/adr/0802)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from civicgrid_grid.adapters import mapstore
from civicgrid_grid.adapters.map_documents import area_documents
from civicgrid_grid.adapters.mapstore import MapIncomplete, MapRepository
from civicgrid_grid.demo.citygen import generate

from ..unit.test_map_documents import shape_1_chunks

pytestmark = [pytest.mark.infra, pytest.mark.asyncio(loop_scope="session")]


def properties(layer) -> list[dict]:
    return [(layer.extra[i] if i < len(layer.extra) else None) or {} for i in range(len(layer))]


def assert_same_map(loaded, city) -> None:
    assert loaded.counts() == city.counts()
    for kind in ("district", "street", "community", "grid"):
        a, b = loaded.layer(kind), city.layer(kind)
        assert (a.codes, a.parents, a.names) == (b.codes, b.parents, b.names), kind
        assert properties(a) == properties(b), kind
        assert bool(np.all(shapely.equals_exact(a.polygons, b.polygons, tolerance=0))), kind
    for field in ("bld_codes", "bld_lon", "bld_lat", "bld_grid", "bld_units"):
        assert np.array_equal(getattr(loaded, field), getattr(city, field)), field


@pytest.fixture
def small_batches(monkeypatch):
    """Cursor batches far smaller than the map, so a load spans many of them (and a partial last one)."""
    monkeypatch.setattr(mapstore, "AREA_READ_BATCH", 13)
    monkeypatch.setattr(mapstore, "BUILDING_READ_BATCH", 97)
    monkeypatch.setattr(mapstore, "WRITE_BATCH", 101)


async def test_a_saved_version_loads_back_as_the_same_map(fresh_db, small_batches):
    city = generate("street", 3)
    repo = MapRepository(fresh_db)
    await repo.ensure_indexes()
    version = await repo.save(city, source="test")
    assert await fresh_db["map_buildings"].count_documents({"map_version": version}) == len(city.bld_codes)
    loaded = await repo.load()
    assert loaded.version == version
    assert_same_map(loaded, city)
    b = city.buildings_of("", limit=1)[0]
    assert loaded.locate(building_id=b["building_id"]).grid == b["grid"]


async def test_the_operators_questions_have_their_indexes_and_answers(fresh_db):
    city = generate("street", 3)
    repo = MapRepository(fresh_db)
    await repo.ensure_indexes()
    version = await repo.save(city, source="test")
    await repo.save(generate("street", 4), source="another version")
    assert {"code_version", "version_level_parent"} <= set(await fresh_db["map_areas"].index_information())
    assert {"code_version", "version_grid"} <= set(await fresh_db["map_buildings"].index_information())
    b = city.buildings_of("", limit=1, seed=5)[0]
    # which grid is building X in (of a given map version)
    doc = await fresh_db["map_buildings"].find_one({"code": b["building_id"], "map_version": version})
    assert (doc["grid"], doc["lon"], doc["lat"]) == (b["grid"], b["lon"], b["lat"])
    # the grids of a community
    community = city.communities.codes[1]
    grids = await fresh_db["map_areas"].find({"map_version": version, "level": "grid", "parent": community},
                                             {"code": 1, "name": 1, "bbox": 1}).to_list(None)
    assert sorted(g["code"] for g in grids) == [g for g in city.grids.codes if g.startswith(community)]
    first = min(grids, key=lambda g: g["code"])
    assert tuple(first["bbox"].values()) == city.grid_bbox(first["code"])


async def test_retired_chunks_are_rewritten_as_plain_documents_once(fresh_db):
    city = generate("street", 3)
    repo = MapRepository(fresh_db)
    await repo.ensure_indexes()
    # what an earlier release left: version 1 complete and current, version 2 interrupted mid-save
    await fresh_db["map_chunks"].insert_many(shape_1_chunks(city, 1, areas_per_chunk=10, buildings_per_chunk=300))
    await fresh_db["map_chunks"].insert_many(shape_1_chunks(city, 2)[:2])
    await fresh_db["map_versions"].insert_one({"_id": 1, "schema_version": 1, "complete": True,
                                               "counts": city.counts(), "source": "old"})
    await fresh_db["map_meta"].insert_many([{"_id": "current", "schema_version": 1, "version": 1},
                                            {"_id": "version_seq", "schema_version": 1, "n": 2}])
    # a run interrupted after writing some of version 1's documents: they are kept, not duplicated
    await fresh_db["map_areas"].insert_one(next(area_documents(city, 1)))

    assert await repo.migrate_retired_chunks() == [1]
    assert "map_chunks" not in await fresh_db.list_collection_names()
    assert await fresh_db["map_buildings"].count_documents({}) == len(city.bld_codes)
    assert await fresh_db["map_areas"].count_documents({"map_version": 2}) == 0
    assert_same_map(await repo.load(), city)
    assert await repo.migrate_retired_chunks() == []  # nothing left: the next start only looks


async def test_a_version_whose_documents_do_not_add_up_is_not_served(fresh_db):
    city = generate("street", 3)
    repo = MapRepository(fresh_db)
    version = await repo.save(city, source="test")
    await fresh_db["map_buildings"].delete_one({"_id": f"{version}:{city.bld_codes[-1]}"})
    with pytest.raises(MapIncomplete, match="buildings"):
        await repo.load()
