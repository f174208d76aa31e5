"""Assignment correctness on the generated MEGACITY: 100,000 random points; the grid the spatial
index (GEOS STRtree) finds must equal the grid an independent check finds -- a numpy
crossing-number point-in-polygon test over bounding-box candidates, no shapely involved."""

from __future__ import annotations

import numpy as np
import shapely

from civicgrid_grid.demo.citygen import generate


def crossing_number(px: np.ndarray, py: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Even-odd rule for many points against one closed ring (n+1, 2)."""
    inside = np.zeros(len(px), dtype=bool)
    x1, y1 = ring[:-1, 0], ring[:-1, 1]
    x2, y2 = ring[1:, 0], ring[1:, 1]
    for a, b, c, d in zip(x1, y1, x2, y2, strict=True):
        cond = (b > py) != (d > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = a + (py - b) * (c - a) / (d - b)
        inside ^= cond & (px < xint)
    return inside


def test_100000_random_points_on_the_megacity_match_an_independent_check():
    city = generate("megacity", 11)
    assert city.counts()["grids"] == 35200 and city.counts()["buildings"] > 950_000
    rng = np.random.default_rng(2024)
    x0, y0, x1, y1 = city.extent()
    px = rng.uniform(x0 - 0.01, x1 + 0.01, 100_000)  # some outside the city on purpose
    py = rng.uniform(y0 - 0.01, y1 + 0.01, 100_000)
    found = city.grid_indices(px, py)

    # independent: bounding boxes as numpy arrays, candidates by sorting on min-x, then crossing number
    coords = [np.asarray(shapely.get_coordinates(p)) for p in city.grids.polygons]
    bmin = np.array([c.min(axis=0) for c in coords])
    bmax = np.array([c.max(axis=0) for c in coords])
    expected = np.full(len(px), -1)
    width = float((bmax[:, 0] - bmin[:, 0]).max())
    order = np.argsort(bmin[:, 0])
    sorted_minx = bmin[order, 0]
    lo = np.searchsorted(sorted_minx, px - width)
    hi = np.searchsorted(sorted_minx, px, side="right")
    pair_p = np.repeat(np.arange(len(px)), hi - lo)
    pair_g = order[np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])]
    keep = ((bmin[pair_g, 0] <= px[pair_p]) & (px[pair_p] <= bmax[pair_g, 0])
            & (bmin[pair_g, 1] <= py[pair_p]) & (py[pair_p] <= bmax[pair_g, 1]))
    pair_p, pair_g = pair_p[keep], pair_g[keep]
    by_grid = np.argsort(pair_g, kind="stable")
    pair_p, pair_g = pair_p[by_grid], pair_g[by_grid]
    bounds = np.flatnonzero(np.diff(pair_g)) + 1
    for ps, gs in zip(np.split(pair_p, bounds), np.split(pair_g, bounds), strict=True):
        if len(gs) == 0:
            continue
        hit = crossing_number(px[ps], py[ps], coords[gs[0]])
        expected[ps[hit]] = gs[0]

    located = found >= 0
    assert located.sum() > 90_000
    # points on a border (found == -2) are measure-zero; none should occur with random floats
    assert (found == -2).sum() == 0
    np.testing.assert_array_equal(np.where(located, found, -1), expected)
