"""The demo city's volunteer roster (anchored at lat 39.90, lon 116.30, ~5 km north and east),
written as JSON lines that ``civicgrid-matching load-demo`` (or ``import-volunteers``) registers.
Each volunteer's ``community`` is the code of the demo city's community their home lies in (the
nearest one for homes past its edge): staff reach the volunteers of their area by that code.

    .venv/bin/python deploy/local/demo_volunteers.py [--count 300] > deploy/local/demo/volunteers.jsonl

The roster is committed (deterministic: fixed seed), so loading the demo needs no generator.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import shapely

from civicgrid_grid.demo.citygen import generate
from civicgrid_grid.settings import GridSettings

ANCHOR = (39.90, 116.30)
#: skills are the codes of intake's default catalogue (the services volunteers give)
SKILLS = ("elderly_home_care", "after_school_care", "disability_assistance", "small_repairs", "legal_advice",
          "hospital_escort")
#: the qualification each service requires in intake's default catalogue (ServiceDefined events)
QUALS = {"elderly_home_care": "elderly_care", "after_school_care": "tutoring",
         "disability_assistance": "disability_assistance", "legal_advice": "legal_practice_license",
         "hospital_escort": "first_aid"}
UNITS = ("District Hospital No.3", "Haidian Tax Bureau", "Street Office", "No.12 Middle School",
         "City Water Company", "District Court")
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英"
PATTERNS = {
    "weekday_evenings": [{"day": d, "start": "17:00", "end": "21:00"} for d in ("mon", "tue", "wed", "thu", "fri")],
    "weekday_afternoons": [{"day": d, "start": "14:00", "end": "18:00"} for d in ("mon", "tue", "wed", "thu", "fri")],
    "weekends": [{"day": d, "start": "08:00", "end": "20:00"} for d in ("sat", "sun")],
    "mornings": [{"day": d, "start": "08:00", "end": "12:00"} for d in ("mon", "tue", "wed", "thu", "fri", "sat")],
    "retired_all_week": [{"day": d, "start": "08:00", "end": "18:00"}
                         for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")],
}


def home_community():
    """Where a home lies: the demo city's (grid's demo map) community containing it, or the nearest."""
    demo = GridSettings.model_fields  # the defaults (load-demo's map); no settings to read here
    communities = generate(demo["demo_size"].default, demo["demo_seed"].default).communities
    tree = shapely.STRtree(communities.polygons)
    return lambda lat, lon: communities.codes[int(tree.nearest(shapely.Point(lon, lat)))]


def demo_volunteers(n: int = 300, seed: int = 2026) -> list[dict]:
    """Roster rows: a volunteer's registration plus ``qualifications`` (codes verified for a year)."""
    rng = np.random.default_rng(seed)
    community_of = home_community()
    out = []
    for i in range(n):
        lat = ANCHOR[0] + float(rng.random()) * 0.045
        lon = ANCHOR[1] + float(rng.random()) * 0.059
        community = community_of(lat, lon)
        skills = sorted(set(rng.choice(SKILLS, size=int(rng.integers(1, 4)), replace=False).tolist()))
        party = bool(rng.random() < 0.6)
        pattern = list(PATTERNS)[int(rng.integers(len(PATTERNS)))]
        row = {
            "id": f"demo-vol-{i + 1:04d}",
            "name": SURNAMES[int(rng.integers(len(SURNAMES)))] + GIVEN[int(rng.integers(len(GIVEN)))]
            + GIVEN[int(rng.integers(len(GIVEN)))],
            "phone": f"139{int(rng.integers(10**7, 10**8))}", "community": community, "lat": lat, "lon": lon,
            "skills": skills, "availability": PATTERNS[pattern], "weekly_hours_cap": float(rng.choice([4, 6, 8, 10])),
            "languages": ["zh"] + (["en"] if rng.random() < 0.2 else []), "party_member": party,
            "work_unit": UNITS[int(rng.integers(len(UNITS)))] if party else None}
        row["qualifications"] = sorted({QUALS[s] for s in skills if s in QUALS and rng.random() < 0.8})
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=300)
    args = ap.parse_args()
    for row in demo_volunteers(args.count):
        print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
