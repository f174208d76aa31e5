"""Records and reports, computed from hours entries and volunteers (small per month)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from civicgrid_matching.domain.hours import DELIVERED, HoursEntry
from civicgrid_matching.domain.model import RATING_POINTS
from civicgrid_matching.domain.volunteer import Volunteer


def _delivered(entries: Iterable[HoursEntry], month: str | None = None) -> list[HoursEntry]:
    return [e for e in entries if e.status == DELIVERED and (month is None or e.month == month)]


def service_times(entries: list[HoursEntry], volunteers: dict[str, Volunteer], month: str) -> dict:
    """Hours and service person-times per community and per volunteer in ``month`` (YYYY-MM)."""
    by_comm: dict[str, dict] = defaultdict(lambda: {"person_times": 0, "hours": 0.0, "volunteers": set()})
    by_vol: dict[str, dict] = defaultdict(lambda: {"services": 0, "hours": 0.0})
    for e in _delivered(entries, month):
        vol = volunteers.get(e.volunteer_id)
        comm = e.community or (vol.community if vol else None) or "unknown"
        c = by_comm[comm]
        c["person_times"] += 1
        c["hours"] += float(e.hours or 0)
        c["volunteers"].add(e.volunteer_id)
        v = by_vol[e.volunteer_id]
        v["services"] += 1
        v["hours"] += float(e.hours or 0)
    communities = [{"community": k, "person_times": v["person_times"], "hours": round(v["hours"], 2),
                    "volunteers": len(v["volunteers"])} for k, v in sorted(by_comm.items())]
    vols = [{"volunteer_id": k, "community": volunteers[k].community if k in volunteers else None,
             "services": v["services"], "hours": round(v["hours"], 2)} for k, v in sorted(by_vol.items())]
    return {"month": month, "by_community": communities, "by_volunteer": vols,
            "totals": {"person_times": sum(c["person_times"] for c in communities),
                       "hours": round(sum(c["hours"] for c in communities), 2), "volunteers": len(vols)}}


def certificate(vol: Volunteer, entries: list[HoursEntry], issued_at: datetime) -> dict:
    """Certificate-ready record: identity, every service delivered, hours, ratings."""
    services = [{"request_id": e.request_id, "service_code": e.service_code, "month": e.month,
                 "date": e.check_in_at, "hours": e.hours, "approval": e.approval, "rating": e.rating}
                for e in sorted(_delivered(entries), key=lambda e: e.check_in_at)]
    ratings = list(vol.ratings.values())
    by_service: dict[str, float] = defaultdict(float)
    for s in services:
        by_service[s["service_code"] or "unknown"] += float(s["hours"] or 0)
    return {
        "volunteer": {"id": vol.id, "name": vol.name, "community": vol.community, "party_member": vol.party_member,
                      "work_unit": vol.work_unit},
        "services": services,
        "totals": {"services": len(services), "hours": round(sum(float(s["hours"] or 0) for s in services), 2),
                   "approved_hours": round(sum(float(s["hours"] or 0) for s in services
                                               if s["approval"] in ("approved", "corrected")), 2),
                   "hours_by_service": {k: round(v, 2) for k, v in sorted(by_service.items())}},
        "ratings": {"count": len(ratings), "mean_points": round(sum(ratings) / len(ratings), 3) if ratings else None},
        "issued_at": issued_at,
    }


WORK_UNIT_COLUMNS = ("volunteer_id", "name", "community", "services", "hours", "rating_mean")


def work_unit_report(unit: str, members: list[Volunteer], entries: list[HoursEntry], month: str) -> dict:
    """How the party members working at ``unit`` served in ``month``."""
    delivered = _delivered(entries, month)
    rows = []
    for v in sorted(members, key=lambda v: v.id):
        mine = [e for e in delivered if e.volunteer_id == v.id]
        rated = [e for e in mine if e.rating]
        rows.append({"volunteer_id": v.id, "name": v.name, "community": v.community, "services": len(mine),
                     "hours": round(sum(float(e.hours or 0) for e in mine), 2),
                     "rating_mean": round(sum(RATING_POINTS[e.rating] for e in rated) / len(rated), 3)
                     if rated else None})
    return {"work_unit": unit, "month": month, "members": rows,
            "totals": {"members": len(rows), "services": sum(r["services"] for r in rows),
                       "hours": round(sum(r["hours"] for r in rows), 2)}}


def to_csv(report: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=WORK_UNIT_COLUMNS)
    w.writeheader()
    for r in report["members"]:
        w.writerow({k: ("" if r[k] is None else r[k]) for k in WORK_UNIT_COLUMNS})
    return buf.getvalue()
