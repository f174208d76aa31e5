"""The demo city's backlog: the open cases of the hotline system the city is replacing, taken over
through intake's import API (``POST /api/v1/imports/requests``) with their original received times
from the last days, then partly worked through the normal APIs -- so that before the live day
starts every page has something to show:

- cases received one or two days ago, their deadlines computed from then: those nobody took are
  late, and supervision has escalated them up the chain as far as they are late (community,
  street, district) -- the overdue and escalated lists are not empty;
- cases of services handled by departments, passed to them by the old system (``dispatched_at``):
  the older ones are past their report-back deadline;
- cases that need a volunteer (a visit tomorrow): some taken by volunteers, some still waiting;
- cases handled since: accepted and resolved now, so their handling times are hours (received ->
  resolved), rated by their residents -- some unsatisfied, which reopens them.

The demo's data lives here, in deploy/local, never in a service package. The import is idempotent
(each case's legacy reference names its received time); a demo that already has a backlog imported
in the last day is not given a second one.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

OFFICE = ZoneInfo("Asia/Shanghai")
#: the system the cases come from, and the administrator who imports them (their act is audited)
SYSTEM = "hotline-legacy"
IMPORTER = "demo-backlog"
BATCH = 50
#: how calls arrive over a local day (hour -> relative weight): quiet at night, busy by day
HOUR_WEIGHTS = [0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.45, 0.8, 1.0, 1.0, 1.0, 0.9, 0.75, 0.85, 1.0, 1.0, 0.95, 0.9,
                0.8, 0.7, 0.6, 0.45, 0.3, 0.2]
#: how residents reached the old system
CHANNELS = {"hotline": 70, "app": 10, "web": 6, "walk_in": 6, "grid_patrol": 8}
#: cases waiting on a department tend to be older: this share of them is from up to this many times further
#: back (so that business-hour report-back deadlines of several working days have passed for some)
OLDER_DEPARTMENT_SHARE, OLDER_DEPARTMENT_REACH = 0.5, 4
#: of the cases handled since, how residents rated them (unsatisfied reopens the case)
RATINGS = {"satisfied": 62, "basically_satisfied": 20, "unsatisfied": 18}
#: share of cases handled since that the resident has rated already
RATED_SHARE = 0.8
#: share of volunteer cases whose offers volunteers have answered already (the rest wait)
VOLUNTEERED_SHARE = 0.6
PARALLEL = 12


@dataclass
class Case:
    item: dict[str, Any]
    #: what happened to it since the import: resolved, accepted or open (untouched)
    fate: str
    department: bool
    volunteer: bool
    request_id: str = ""
    token: str = ""
    response_due: datetime | None = None
    work: dict[str, Any] = field(default_factory=dict)


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), list(weights.values()))[0]


def received_time(rng: random.Random, now: datetime, days: float) -> datetime:
    """A moment in the last ``days`` days, by the hours at which residents call."""
    while True:
        t = now - timedelta(seconds=rng.uniform(600, days * 86400))
        if rng.random() < HOUR_WEIGHTS[t.astimezone(OFFICE).hour]:
            return t.replace(microsecond=0)


def fate_of(rng: random.Random, age_hours: float) -> str:
    """Older cases are more often handled by now; the rest are open (late, if their limit passed)."""
    older = min(1.0, age_hours / 48)
    r = rng.random()
    if r < 0.30 + 0.35 * older:
        return "resolved"
    if r < 0.45 + 0.35 * older:
        return "accepted"
    return "open"


def visit_tomorrow(now: datetime) -> str:
    """A visit tomorrow at 10:00 in the district (the demo volunteers serve by day)."""
    day = now.astimezone(OFFICE).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, 10, tzinfo=OFFICE).isoformat()


def plan(day, n: int, days: float, now: datetime, rng: random.Random) -> list[Case]:
    """``n`` cases of the demo city's mix of services and places, each with its fate."""
    cases = []
    for i in range(n):
        code = rng.choices(day.codes, day.weights)[0]
        svc = day.services[code]
        department = "department" in (svc.get("handled_by") or [])
        volunteer = bool(svc.get("needs_volunteer")) or "volunteer" in (svc.get("handled_by") or [])
        back = days * OLDER_DEPARTMENT_REACH if department and rng.random() < OLDER_DEPARTMENT_SHARE else days
        received = received_time(rng, now, back)
        g = rng.choice(day.grids)
        min_lon, min_lat, max_lon, max_lat = g["bbox"]
        item = {"external_ref": f"HL-{received.astimezone(OFFICE):%Y%m%d-%H%M%S}-{i:04d}",
                "received_at": received.isoformat(), "service_code": code,
                "location": {"lat": rng.uniform(min_lat, max_lat), "lon": rng.uniform(min_lon, max_lon)},
                "channel": _weighted(rng, CHANNELS), "description": f"{svc.get('name_zh', code)}: 原热线系统转入",
                "attributes": {a["code"]: day.answer(a) for a in svc.get("attributes", []) if a.get("required")}}
        if department:  # the old system passed it on within the hour or two
            item["dispatched_at"] = min(now, received + timedelta(minutes=rng.uniform(10, 120))).isoformat()
        if volunteer:
            item["preferred_time"] = visit_tomorrow(now)
        cases.append(Case(item, fate_of(rng, (now - received).total_seconds() / 3600), department, volunteer))
    return cases


class Backlog:
    """Imports the planned cases and works them through the services' public APIs."""

    def __init__(self, day, *, n: int, days: float, seed: int | None = None) -> None:
        self.day, self.n, self.days = day, n, days
        self.rng = random.Random(seed)
        self.stats: Counter[str] = Counter()
        self.admin = day.bearer("admin", sub=IMPORTER)

    def log(self, msg: str) -> None:
        print(f"[backlog] {msg}", flush=True)

    async def already_seeded(self) -> datetime | None:
        """When this demo last imported a backlog, if within the last day (audit's staff access trail)."""
        r = await self.day.client.get(f"{self.day.url('audit')}/audit/staff-access",
                                      params={"staff_id": IMPORTER, "limit": 1000},
                                      headers=self.day.bearer("auditor", sub="demo-auditor"))
        r.raise_for_status()
        times = [datetime.fromisoformat(a["at"].replace("Z", "+00:00")) for a in r.json()
                 if a.get("action") == "requests.import"]
        last = max(times, default=None)
        return last if last and datetime.now(UTC) - last < timedelta(days=1) else None

    async def seed(self) -> Counter[str]:
        if self.n <= 0:
            return self.stats
        last = await self.already_seeded()
        if last is not None:
            self.log(f"a backlog was imported at {last.astimezone(OFFICE):%Y-%m-%d %H:%M}; not importing another")
            return self.stats
        now = datetime.now(UTC)
        cases = plan(self.day, self.n, self.days, now, self.rng)
        self.log(f"importing {len(cases)} open cases of the old hotline, received over the last {self.days:g} days")
        for start in range(0, len(cases), BATCH):
            await self.import_batch(cases[start:start + BATCH])
        self.log(f"imported {self.stats['imported']} ({self.stats['already_imported']} already there); "
                 "working through them")
        gate = asyncio.Semaphore(PARALLEL)

        async def one(c: Case) -> None:
            async with gate:
                await self.work(c)

        await asyncio.gather(*(one(c) for c in cases))
        s = self.stats
        self.log(f"handled since: {s['accepted']} accepted ({s['accepted_late']} after their limit), "
                 f"{s['resolved']} resolved, {s['rated']} rated ({s['rated_unsatisfied']} unsatisfied, reopened); "
                 f"{s['open']} untouched ({s['open_late']} past their response limit: escalated); "
                 f"{s['department_cases']} with departments ({s['department_reports']} reported); "
                 f"{s['volunteer_cases']} need volunteers ({s['volunteer_asked']} answered so far)")
        return self.stats

    async def import_batch(self, cases: list[Case]) -> None:
        r = await self.day.client.post(
            f"{self.day.url('intake')}/api/v1/imports/requests", json={"system": SYSTEM, "items": [c.item for c in cases]},
            headers={**self.admin, "X-Change-Reason": "make run: the demo city's backlog from the old hotline"},
            timeout=120)
        if r.status_code != 200:
            raise RuntimeError(f"the backlog import was refused ({r.status_code}): {r.text[:2000]}")
        for c, res in zip(cases, r.json()["items"], strict=True):
            c.request_id, c.token = res["request_id"], res["token"]
            c.response_due = datetime.fromisoformat(res["response_due"].replace("Z", "+00:00"))
            self.stats[res["status"]] += 1

    async def assigned(self, c: Case) -> dict[str, Any] | None:
        for _ in range(240):
            w = await self.day.work(c.request_id)
            if w and w.get("assignee_id"):
                return w
            await asyncio.sleep(0.5)
        self.day.errors.append(f"backlog: {c.request_id} not assigned")
        return None

    async def work(self, c: Case) -> None:
        """What happened to one case since the old system handed it over."""
        self.stats["department_cases"] += c.department
        self.stats["volunteer_cases"] += c.volunteer
        if c.volunteer and self.rng.random() < VOLUNTEERED_SHARE:
            self.stats["volunteer_asked"] += 1
            self.day.spawn(self.day.volunteer(c.request_id))
        if c.fate == "open":
            self.stats["open"] += 1
            self.stats["open_late"] += bool(c.response_due and c.response_due < datetime.now(UTC))
            if c.department and self.rng.random() < 0.5:
                await self.departments(c, report=False)  # seen by the department, no report yet
            return
        w = await self.assigned(c)
        if w is None:
            return
        worker = self.day.worker_of(w)
        r = await self.day.client.post(f"{self.day.url('grid')}/v1/requests/{c.request_id}/accept", headers=worker)
        if r.status_code == 200:
            self.stats["accepted"] += 1
            self.stats["accepted_late"] += bool(c.response_due and c.response_due < datetime.now(UTC))
        if c.department:
            await self.departments(c, report=c.fate == "resolved")
        if c.fate != "resolved":
            return
        r = await self.day.client.post(f"{self.day.url('grid')}/v1/requests/{c.request_id}/resolve", headers=worker,
                                       json={"resolution_note": "Handled on site"})
        if r.status_code != 200:
            self.day.errors.append(f"backlog resolve {r.status_code}: {r.text[:120]}")
            return
        self.stats["resolved"] += 1
        if self.rng.random() < RATED_SHARE:
            await self.rate(c)

    async def departments(self, c: Case, *, report: bool) -> None:
        w = await self.assigned(c)
        for dispatch_id, d in ((w or {}).get("dispatches") or {}).items():
            for dep in d.get("departments", []):
                h = self.day.bearer("department", sub=dep)
                base = f"{self.day.url('grid')}/v1/requests/{c.request_id}/dispatches/{dispatch_id}"
                await self.day.client.post(f"{base}/acknowledge", headers=h)
                if report:
                    r = await self.day.client.post(f"{base}/report", headers=h,
                                                   json={"outcome": "Inspected and corrected"})
                    self.stats["department_reports"] += r.status_code == 200

    async def rate(self, c: Case) -> None:
        """The resident rates once intake shows the case resolved (it follows grid's events)."""
        rating = _weighted(self.rng, RATINGS)
        for _ in range(120):
            r = await self.day.client.post(f"{self.day.url('intake')}/api/v1/requests/{c.request_id}/rating",
                                           headers={"X-Request-Token": c.token}, json={"rating": rating})
            if r.status_code == 200:
                self.stats["rated"] += 1
                self.stats[f"rated_{rating}"] += 1
                return
            if r.status_code != 409:  # 409: not resolved yet as intake sees it
                self.day.errors.append(f"backlog rating {r.status_code}: {r.text[:120]}")
                return
            await asyncio.sleep(0.5)
