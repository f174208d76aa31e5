"""Demo-city generator: a reproducible synthetic city (from a seed) at four sizes.

The city is anchored at lat 39.90, lon 116.30 and grows north and east. Grids are a jittered
lattice of quadrilaterals whose shared vertices move together, so the tiling has no gaps or
overlaps; communities, streets and districts are rectangular blocks of grids whose outlines follow
the same jittered vertices. Everything is vectorised with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from civicgrid_grid.domain.citymap import CityMap, Layer

ANCHOR_LAT = 39.90
ANCHOR_LON = 116.30
CELL_DLON = 0.003  # ~256 m at this latitude
CELL_DLAT = 0.0025  # ~278 m
FIRST_DISTRICT = 110101


@dataclass(frozen=True)
class Size:
    districts: tuple[int, int]  # districts across x, y
    streets: tuple[int, int]  # streets per district across x, y
    communities: tuple[int, int]  # communities per street
    grids: tuple[int, int]  # grids per community
    buildings: tuple[int, int]  # buildings per grid, inclusive range


SIZES: dict[str, Size] = {
    "street": Size((1, 1), (1, 1), (3, 2), (2, 3), (8, 16)),  # 1 street, 6 communities, 36 grids
    "district": Size((1, 1), (3, 3), (3, 2), (2, 2), (10, 20)),  # 9 streets, 54 communities, 216 grids
    "city": Size((2, 2), (3, 3), (4, 3), (2, 2), (20, 37)),  # 36 streets, 432 communities, 1,728 grids
    # 16 districts, 320 streets, 7,040 communities, 35,200 grids, ~1,000,000 buildings
    "megacity": Size((4, 4), (5, 4), (11, 2), (1, 5), (20, 37)),
}

PROPERTY_COMPANIES = ("pc-jinyu", "pc-huaxin", "pc-anju", "pc-lvcheng", "pc-xinghe", "pc-dongfang")


def generate(size: str = "street", seed: int = 1) -> CityMap:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; one of {', '.join(SIZES)}")
    s = SIZES[size]
    rng = np.random.default_rng(seed)
    cw, ch = s.grids
    sw, sh = s.communities
    dw, dh = s.streets
    Dw, Dh = s.districts
    nx, ny = Dw * dw * sw * cw, Dh * dh * sh * ch

    # lattice vertices, jittered inside (the city's outline stays straight)
    X = ANCHOR_LON + np.arange(nx + 1)[None, :] * CELL_DLON + np.zeros((ny + 1, 1))
    Y = ANCHOR_LAT + np.arange(ny + 1)[:, None] * CELL_DLAT + np.zeros((1, nx + 1))
    jx = rng.uniform(-0.2, 0.2, X.shape) * CELL_DLON
    jy = rng.uniform(-0.2, 0.2, Y.shape) * CELL_DLAT
    jx[:, 0] = jx[:, -1] = 0
    jx[0, :] = jx[-1, :] = 0
    jy[0, :] = jy[-1, :] = 0
    jy[:, 0] = jy[:, -1] = 0
    X, Y = np.round(X + jx, 7), np.round(Y + jy, 7)

    # grids: one quad per lattice cell
    gy, gx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    gx, gy = gx.ravel(), gy.ravel()
    corners = [(gy, gx), (gy, gx + 1), (gy + 1, gx + 1), (gy + 1, gx), (gy, gx)]
    rings = np.stack([np.stack([X[a, b], Y[a, b]], -1) for a, b in corners], 1)
    grid_polys = shapely.polygons(rings)

    # hierarchy numbers of every grid
    cx, cy = gx // cw, gy // ch  # community lattice position
    sx, sy = cx // sw, cy // sh  # street
    dx, dy = sx // dw, sy // dh  # district
    d_seq = dy * Dw + dx
    s_seq = (sy % dh) * dw + (sx % dw)
    c_seq = (cy % sh) * sw + (cx % sw)
    g_seq = (gy % ch) * cw + (gx % cw)
    d_code = FIRST_DISTRICT + d_seq
    s_code = d_code * 1000 + s_seq + 1
    c_code = s_code * 1000 + c_seq + 1
    g_code = c_code * 1000 + g_seq + 1
    order = np.argsort(g_code, kind="stable")
    g_code, grid_polys = g_code[order], grid_polys[order]
    c_code, s_code, d_code = c_code[order], s_code[order], d_code[order]
    gx, gy, rings = gx[order], gy[order], rings[order]
    grids = Layer([str(c) for c in g_code], [str(c // 1000) for c in g_code],
                  [f"Grid {str(c)[-6:-3]}-{str(c)[-3:]}" for c in g_code], grid_polys)

    def block_layer(codes_per_grid: np.ndarray, bw: int, bh: int, kind: str) -> Layer:
        srt = np.argsort(codes_per_grid, kind="stable")
        uniq, starts = np.unique(codes_per_grid[srt], return_index=True)
        mins_x = np.minimum.reduceat(gx[srt], starts)
        mins_y = np.minimum.reduceat(gy[srt], starts)
        codes, polys, names, extra = [], [], [], []
        for k, code in enumerate(uniq):
            x0, y0 = int(mins_x[k]), int(mins_y[k])
            x1, y1 = x0 + bw, y0 + bh
            xs = list(range(x0, x1 + 1))
            ring = ([(y0, x) for x in xs] + [(y, x1) for y in range(y0 + 1, y1 + 1)]
                    + [(y1, x) for x in reversed(xs[:-1])] + [(y, x0) for y in range(y1 - 1, y0 - 1, -1)])
            ia, ib = np.array([r[0] for r in ring]), np.array([r[1] for r in ring])
            polys.append(shapely.polygons(np.stack([X[ia, ib], Y[ia, ib]], -1)))
            codes.append(str(int(code)))
            tail = str(int(code))[-3:]
            names.append(f"{kind.title()} {str(int(code))[-6:-3]}-{tail}" if kind != "district" else f"District {code}")
            if kind == "community":
                extra.append({"property_company": PROPERTY_COMPANIES[int(rng.integers(len(PROPERTY_COMPANIES)))]})
        parents = [c[:-3] if kind != "district" else "" for c in codes]
        return Layer(codes, parents, names, np.array(polys, dtype=object), extra)

    communities = block_layer(c_code, cw, ch, "community")
    streets = block_layer(s_code, cw * sw, ch * sh, "street")
    districts = block_layer(d_code, cw * sw * dw, ch * sh * dh, "district")

    # buildings: bilinear points inside each quad
    nb = rng.integers(s.buildings[0], s.buildings[1] + 1, size=len(g_code))
    bg = np.repeat(np.arange(len(g_code)), nb)
    seq = np.arange(len(bg)) - np.repeat(np.cumsum(nb) - nb, nb)
    u = rng.uniform(0.12, 0.88, len(bg))
    v = rng.uniform(0.12, 0.88, len(bg))
    r = rings[bg]  # (n, 5, 2): p00, p10, p11, p01
    pts = ((1 - u)[:, None] * (1 - v)[:, None] * r[:, 0] + u[:, None] * (1 - v)[:, None] * r[:, 1]
           + u[:, None] * v[:, None] * r[:, 2] + (1 - u)[:, None] * v[:, None] * r[:, 3])
    b_codes = g_code[bg].astype(np.int64) * 1000 + seq + 1
    units = rng.integers(1, 7, size=len(bg)).astype(np.int16)
    return CityMap(districts, streets, communities, grids, b_codes, np.round(pts[:, 0], 7), np.round(pts[:, 1], 7),
                   bg.astype(np.int32), units)
