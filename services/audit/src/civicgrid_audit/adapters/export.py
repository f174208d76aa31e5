"""Quarterly evaluation export: CSV (one per dimension), JSON (everything) and charts (SVG + PNG)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

COLUMNS = ("rank", "key", "score", "received", "counted", "response_rate", "resolution_rate", "satisfaction_rate",
           "response_on_time_rate", "resolution_on_time_rate", "report_back_on_time_rate", "reopen_rate", "overdue",
           "escalations", "median_handling_hours", "p90_handling_hours", "rated", "satisfied", "basically_satisfied",
           "unsatisfied", "dispatched", "reported")
TITLES = {"staff": "Staff members", "grid": "Grids", "community": "Communities", "department": "Departments",
          "property": "Property companies"}


def write_evaluation(evaluation: dict[str, Any], out: Path, *, charts: bool = True, top: int = 20) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    q = evaluation["quarter"]
    files = []
    j = out / f"evaluation-{q}.json"
    j.write_text(json.dumps(evaluation, ensure_ascii=False, indent=2))
    files.append(j)
    for dim, rows in evaluation["dimensions"].items():
        p = out / f"evaluation-{q}-{dim}.csv"
        with p.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow(r)
        files.append(p)
        if charts and rows:
            files += _chart(q, dim, rows[:top], out)
    return files


def _chart(quarter: str, dim: str, rows: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [r["key"] for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.45 * len(rows) + 1.2)))
    series = [("response_rate", "response"), ("resolution_rate", "resolution"), ("satisfaction_rate", "satisfaction")]
    h = 0.26
    for i, (field, label) in enumerate(series):
        vals = [100 * (r[field] or 0) for r in rows][::-1]
        ax.barh([y + (i - 1) * h for y in range(len(keys))], vals, height=h, label=label)
    ax.set_yticks(range(len(keys)), [f"#{r['rank']} {r['key']} ({r['score']:.1f})" for r in rows][::-1], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("%")
    ax.set_title(f"{TITLES.get(dim, dim)} - quarterly evaluation {quarter} (rank, score)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    paths = [out / f"evaluation-{quarter}-{dim}.svg", out / f"evaluation-{quarter}-{dim}.png"]
    for p in paths:
        fig.savefig(p, dpi=110)
    plt.close(fig)
    return paths
