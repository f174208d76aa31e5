"""Demo roster for a generated city: staff with A/B posts, the supervision chain, departments."""

from __future__ import annotations

from civicgrid_grid.domain.citymap import CityMap
from civicgrid_grid.domain.roster import LINES, post_id

DEPARTMENTS: list[dict] = [
    {"_id": "chengguan", "name": "Urban management (城管)", "enforces": ["illegal_construction", "street_vending",
                                                                        "noise", "littering"]},
    {"_id": "market_supervision", "name": "Market supervision (市场监管)", "enforces": ["food_safety", "pricing"]},
    {"_id": "public_security", "name": "Public security (公安)", "enforces": ["public_order", "parking"]},
    {"_id": "housing", "name": "Housing and construction (住建)", "enforces": ["building_safety", "elevator"]},
    {"_id": "property_office", "name": "Property management office (物业管理办公室)",
     "enforces": ["property_service", "property_fees"]},
    {"_id": "environment", "name": "Ecology and environment (生态环境)", "enforces": ["pollution", "noise"]},
]



def staff_ids_for_grid(grid: str) -> tuple[str, str, str]:
    return f"s{grid}-1", f"s{grid}-2", f"h{grid}"


def build_roster(city: CityMap, *, load_limit: int = 20, grid_limit: int | None = None) -> dict[str, list[dict]]:
    """Staff, posts and chain documents for every grid (or the first ``grid_limit`` grids)."""
    staff: list[dict] = []
    posts: list[dict] = []
    chain: list[dict] = []
    grids = city.grids.codes if grid_limit is None else city.grids.codes[:grid_limit]

    def person(sid: str, area: str, level: str, role: str, limit: int) -> dict:
        # every demo worker is trained for both lines: A on one, B on the other
        return {"_id": sid, "name": f"Staff {sid[-8:]}", "role": role, "area": area, "level": level,
                "lines": list(LINES), "active": True, "duty": "on", "leave_until": None, "away_until": None,
                "limit": limit, "load": 0, "holding": []}

    for g in grids:
        w1, w2, head = staff_ids_for_grid(g)
        staff += [person(w1, g, "grid", "grid_worker", load_limit), person(w2, g, "grid", "grid_worker", load_limit),
                  person(head, g, "grid", "grid_worker", load_limit * 2)]
        posts += [{"_id": post_id(g, "general"), "area": g, "line": "general", "level": "grid", "a": w1, "b": w2},
                  {"_id": post_id(g, "care"), "area": g, "line": "care", "level": "grid", "a": w2, "b": w1}]
        chain.append({"_id": f"grid:{g}", "level": "grid", "area": g, "staff_id": head})
    used = set(grids)
    for kind, prefix, limit in (("community", "c", load_limit * 5), ("street", "t", load_limit * 20),
                                ("district", "d", 10**9)):
        layer = city.layer(kind)
        for code in layer.codes:
            if not any(g.startswith(code) for g in used) and grid_limit is not None:
                continue
            sid = f"{prefix}{code}"
            staff.append(person(sid, code, kind, "supervisor", limit))
            chain.append({"_id": f"{kind}:{code}", "level": kind, "area": code, "staff_id": sid})
    return {"staff": staff, "posts": posts, "chain": chain, "departments": [dict(d) for d in DEPARTMENTS]}
