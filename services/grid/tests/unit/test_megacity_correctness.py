"""Assignment correctness on the generated MEGACITY: 100,000 random points; the grid the spatial
index (GEOS STRtree) finds must equal the grid an independent check finds -- a numpy
crossing-number point-in-polygon test over bounding-box candidates, no shapely involved."""

from __future__ import annotations

import numpy as np
import shapely

from civicgrid_grid.demo.citygen import generate


def edges_of(rings: list[np.ndarray]) -> np.ndarray:
    """Every ring's edges as (grids, most edges, 4) -- x1, y1, x2, y2 -- padded with NaN, which no
    comparison below counts as a crossing."""
    most = max(len(r) for r in rings) - 1
    edges = np.full((len(rings), most, 4), np.nan)
    for g, r in enumerate(rings):
        edges[g, : len(r) - 1] = np.hstack([r[:-1], r[1:]])
    return edges


def crossing_number(px: np.ndarray, py: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Even-odd rule, point i against the ring whose edges are ``edges[i]`` (all pairs at once)."""
    x1, y1, x2, y2 = (edges[:, :, k] for k in range(4))
    py, px = py[:, None], px[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        crosses = ((y1 > py) != (y2 > py)) & (px < x1 + (py - y1) * (x2 - x1) / (y2 - y1))
    return crosses.sum(axis=1) % 2 == 1


def test_100000_random_points_on_the_megacity_match_an_independent_check():
    city = generate("megacity", 11)
    assert city.counts()["grids"] == 35200 and city.counts()["buildings"] > 950_000
    rng = np.random.default_rng(2024)
    x0, y0, x1, y1 = city.extent()
    px = rng.uniform(x0 - 0.01, x1 + 0.01, 100_000)  # some outside the city on purpose
    py = rng.uniform(y0 - 0.01, y1 + 0.01, 100_000)
    found = city.grid_indices(px, py)

    # independent: bounding boxes in a uniform bucket grid (a cell as large as the largest box, so a
    # box touches at most 2 x 2 cells), candidates joined on the point's cell, then crossing number
    coords = [np.asarray(shapely.get_coordinates(p)) for p in city.grids.polygons]
    bmin = np.array([c.min(axis=0) for c in coords])
    bmax = np.array([c.max(axis=0) for c in coords])
    expected = np.full(len(px), -1)
    cell = (bmax - bmin).max(axis=0)
    origin = np.array([px.min(), py.min()])
    columns = int((max(px.max(), bmax[:, 0].max()) - origin[0]) / cell[0]) + 2

    def cell_id(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (np.floor((y - origin[1]) / cell[1]).astype(np.int64) * columns
                + np.floor((x - origin[0]) / cell[0]).astype(np.int64))

    corners = [cell_id(xs, ys) for xs in (bmin[:, 0], bmax[:, 0]) for ys in (bmin[:, 1], bmax[:, 1])]
    bucket_cell = np.concatenate(corners)
    bucket_grid = np.tile(np.arange(len(coords)), 4)
    unique = np.unique(np.stack([bucket_cell, bucket_grid]), axis=1)  # a box within one cell once
    bucket_cell, bucket_grid = unique
    point_cell = cell_id(px, py)
    lo = np.searchsorted(bucket_cell, point_cell)
    hi = np.searchsorted(bucket_cell, point_cell, side="right")
    pair_p = np.repeat(np.arange(len(px)), hi - lo)
    pair_g = bucket_grid[np.repeat(lo - np.cumsum(np.r_[0, (hi - lo)[:-1]]), hi - lo) + np.arange(len(pair_p))]
    keep = ((bmin[pair_g, 0] <= px[pair_p]) & (px[pair_p] <= bmax[pair_g, 0])
            & (bmin[pair_g, 1] <= py[pair_p]) & (py[pair_p] <= bmax[pair_g, 1]))
    pair_p, pair_g = pair_p[keep], pair_g[keep]
    hit = crossing_number(px[pair_p], py[pair_p], edges_of(coords)[pair_g])
    expected[pair_p[hit]] = pair_g[hit]

    located = found >= 0
    assert located.sum() > 90_000
    # points on a border (found == -2) are measure-zero; none should occur with random floats
    assert (found == -2).sum() == 0
    np.testing.assert_array_equal(np.where(located, found, -1), expected)
