"""A simulated day in the demo city, driven through the services' public APIs, with a live view.

First the city's backlog: the open cases of the hotline system it replaces, imported with their
original received times from the last ``--backlog-days`` days and partly worked since
(``demo_backlog.py``), so that late cases, escalations, dispatches, volunteers and unsatisfied
residents are there from the start. Then the live day on top: residents submit requests at
``--rate`` per second (Poisson arrivals) with a realistic mix of services and places; grid workers
accept and resolve, departments acknowledge and report, volunteers answer offers, check in and
out, and residents rate.

The platform's clocks, deadlines and KPIs run in real time. So ``--time-scale`` (60 = one
simulated minute per real second) compresses how soon people *react* -- a worker looking at the
queue, a volunteer answering an offer, a resident rating -- but not how long the work takes: a
case not fixed on the spot is resolved after hours of real time, and a late worker or department
is late in real time, so that handling times, on-time rates and escalations stay those of a real
office. The terminal shows requests per second, consumer lag per service, open and overdue
counts and the headline figures from supervision. Ctrl-C stops it.

    python deploy/local/simulate.py --rate 2 --time-scale 60 --backlog 600 --backlog-days 2
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import signal
import time
from collections import Counter, deque
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import demo_backlog
import httpx
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from civicgrid_runtime.auth import mint_token

SECRET = os.environ.get("CIVICGRID_AUTH_SECRET", "civicgrid-development-secret-change-me")
PORTS = {"intake": 8101, "grid": 8102, "matching": 8103, "audit": 8104}
OFFICE = ZoneInfo("Asia/Shanghai")
#: the share of each service in a street office's day (the rest spread evenly over the catalogue)
MIX = {
    "sanitation": 22, "property_complaint": 14, "public_facility": 10, "parking": 8, "neighbour_dispute": 7,
    "elderly_home_care": 6, "street_vending": 5, "public_order": 5, "greening": 4, "water_heating": 4,
    "after_school_care": 3, "illegal_construction": 3, "food_safety": 2, "disability_assistance": 2,
    "floating_population": 3, "other": 2,
}

#: shares of requests whose worker (or department) is late enough for the clocks to run out, that a
#: worker whistles a department for, and that a worker asks volunteers for
LATE_SHARE = 0.12
WHISTLE_SHARE = 0.08
VOLUNTEER_SHARE = 0.05
#: share of requests fixed on the spot (minutes of simulated time); the others take hours of real time
ON_THE_SPOT_SHARE = 0.15
#: real hours (median) that work not done on the spot takes, a late worker waits and a late department takes
WORK_HOURS, LATE_WORKER_HOURS, LATE_DEPARTMENT_HOURS = 4.0, 5.0, 8.0
#: departments a worker whistles, by how often
WHISTLED = {"chengguan": 5, "market_supervision": 2, "public_security": 2, "housing": 1}


def url(svc: str) -> str:
    return os.environ.get(f"CIVICGRID_{svc.upper()}_URL", f"http://127.0.0.1:{PORTS[svc]}")


def bearer(role: str, sub: str = "simulator", area: str = "") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(secret=SECRET, sub=sub, role=role, area=area)}"}


def answer(attr: dict[str, Any]) -> Any:
    """A plausible answer to an Open311 attribute of the catalogue."""
    values = [v["key"] for v in attr.get("values") or []]
    dt = attr.get("datatype")
    if dt == "singlevaluelist" and values:
        return random.choice(values)
    if dt == "multivaluelist" and values:
        return random.sample(values, k=1)
    if dt == "number":
        return random.randint(1, 3) if "age" not in attr["code"] else random.randint(65, 95)
    if dt == "datetime":
        return datetime.now(UTC).isoformat()
    return "simulated"


class Day:
    answer = staticmethod(answer)
    bearer = staticmethod(bearer)
    url = staticmethod(url)

    def __init__(self, rate: float, time_scale: float, *, backlog: int = 0, backlog_days: float = 2.0,
                 seed: int | None = None) -> None:
        self.rate, self.scale = rate, time_scale
        self.stats: Counter[str] = Counter()
        self.submitted_at: deque[float] = deque(maxlen=5000)
        self.lag: dict[str, Any] = {}
        self.kpis: dict[str, Any] = {}
        self.overdue = 0
        self.errors: deque[str] = deque(maxlen=4)
        self.tasks: set[asyncio.Task] = set()
        self.admin = bearer("admin")
        self.client = httpx.AsyncClient(timeout=15, limits=httpx.Limits(max_connections=64))
        self.backlog = demo_backlog.Backlog(self, n=backlog, days=backlog_days, seed=seed)
        #: the first day supervision's figures are shown for: the backlog's oldest (department cases reach
        #: further back)
        reach = demo_backlog.OLDER_DEPARTMENT_REACH * backlog_days
        self.since = datetime.now(OFFICE).date() - timedelta(days=math.ceil(reach) if backlog else 0)

    def delay(self, minutes: float) -> float:
        """Real seconds for a lognormal delay of about ``minutes`` simulated minutes (a reaction)."""
        return random.lognormvariate(0, 0.5) * minutes * 60 / self.scale

    @staticmethod
    def real_delay(hours: float) -> float:
        """Real seconds for a lognormal duration of about ``hours`` real hours (work, lateness)."""
        return random.lognormvariate(0, 0.6) * hours * 3600

    @staticmethod
    def worker_of(w: dict[str, Any]) -> dict[str, str]:
        """The bearer of whoever holds a work item (a supervisor for the street's unlocated queue)."""
        if w.get("holder") == "unlocated":
            return bearer("supervisor")
        return bearer("grid_worker", sub=w["assignee_id"], area=w.get("grid") or "")

    async def load(self) -> None:
        r = await self.client.get(f"{url('grid')}/v1/map/grids", params={"limit": 50000}, headers=self.admin)
        r.raise_for_status()
        self.grids = r.json() if isinstance(r.json(), list) else r.json()["grids"]
        r = await self.client.get(f"{url('intake')}/api/v1/services")
        r.raise_for_status()
        self.services = {s["code"]: s for s in r.json() if s.get("active", True)}
        codes = list(self.services)
        self.weights = [MIX.get(c, 1) for c in codes]
        self.codes = codes

    # -- actors

    def spawn(self, coro) -> None:
        t = asyncio.create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self._finished)

    def _finished(self, t: asyncio.Task) -> None:
        """An actor that failed (a service restarting, a connection dropped) is shown in the view's
        errors and counted; the day goes on."""
        self.tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            self.stats["actor_errors"] += 1
            self.errors.append(f"{t.get_coro().__name__}: {t.exception()!r}"[:200])

    async def resident(self) -> None:
        code = random.choices(self.codes, self.weights)[0]
        svc = self.services[code]
        g = random.choice(self.grids)
        min_lon, min_lat, max_lon, max_lat = g["bbox"]
        lat = random.uniform(min_lat, max_lat)
        lon = random.uniform(min_lon, max_lon)
        body = {"service_code": code, "location": {"lat": lat, "lon": lon}, "channel": random.choice(
                ["app", "web", "hotline", "walk_in", "grid_patrol"]),
                "description": f"{svc.get('name_zh', code)}: simulated request",
                "attributes": {a["code"]: answer(a) for a in svc.get("attributes", []) if a.get("required")}}
        r = await self.client.post(f"{url('intake')}/api/v1/requests", json=body)
        if r.status_code != 201:
            self.stats["rejected"] += 1
            self.errors.append(f"submit {r.status_code}: {r.text[:120]}")
            return
        self.stats["submitted"] += 1
        self.submitted_at.append(time.monotonic())
        created = r.json()
        if created.get("duplicate_of"):
            self.stats["merged"] += 1
            return
        self.spawn(self.handle(created, svc))

    async def work(self, rid: str) -> dict[str, Any] | None:
        r = await self.client.get(f"{url('grid')}/v1/requests/{rid}", headers=self.admin)
        return r.json() if r.status_code == 200 else None

    async def handle(self, created: dict[str, Any], svc: dict[str, Any]) -> None:
        """One request's day. Most go smoothly; some workers are late (the clocks run out and
        supervision escalates), some cases need a department's whistle or a volunteer, and some
        residents are not satisfied (the request reopens and is handled again). Reactions are
        compressed by the time scale; work and lateness take real time (see the module's doc)."""
        rid = created["request_id"]
        late = random.random() < LATE_SHARE
        # the grid worker looks at the queue (a late one only hours later)
        await asyncio.sleep(self.real_delay(LATE_WORKER_HOURS) if late else self.delay(25))
        w = await self.work(rid)
        if not w or not w.get("assignee_id"):
            return
        self.stats["late_accepts"] += late
        worker = self.worker_of(w)
        r = await self.client.post(f"{url('grid')}/v1/requests/{rid}/accept", headers=worker)
        if r.status_code == 200:
            self.stats["accepted"] += 1
        if not w.get("dispatches") and random.random() < WHISTLE_SHARE:
            await self.whistle(rid, worker)
            w = await self.work(rid) or w
        for dispatch_id, d in (w.get("dispatches") or {}).items():
            for dep in d.get("departments", []):
                self.spawn(self.department(rid, dispatch_id, dep))
        if "volunteer" in (w.get("handled_by") or []):
            self.spawn(self.volunteer(rid))
        elif random.random() < VOLUNTEER_SHARE and await self.ask_volunteers(rid, worker):
            self.spawn(self.volunteer(rid))
        for round_ in range(2):  # an unsatisfied resident reopens it once; the second answer stands
            on_the_spot = random.random() < ON_THE_SPOT_SHARE
            await asyncio.sleep(self.delay(30) if on_the_spot else self.real_delay(WORK_HOURS / (round_ + 1)))
            w = await self.work(rid)
            if w and w.get("status") not in ("resolved", "closed", "rejected"):
                r = await self.client.post(f"{url('grid')}/v1/requests/{rid}/resolve", headers=worker,
                                           json={"resolution_note": "Handled on site"})
                if r.status_code == 200:
                    self.stats["resolved"] += 1
            await asyncio.sleep(self.delay(60))  # the resident reads the answer
            weights = [70, 15, 15] if round_ == 0 else [80, 20, 0]
            rating = random.choices(["satisfied", "basically_satisfied", "unsatisfied"], weights)[0]
            r = await self.client.post(f"{url('intake')}/api/v1/requests/{rid}/rating",
                                       headers={"X-Request-Token": created["token"]}, json={"rating": rating})
            if r.status_code == 200:
                self.stats[f"rated_{rating}"] += 1
            if rating != "unsatisfied":
                return

    async def whistle(self, rid: str, worker: dict[str, str]) -> None:
        """The worker calls in a department (urban management most often) with a short report-back."""
        dep = random.choices(list(WHISTLED), list(WHISTLED.values()))[0]
        r = await self.client.post(f"{url('grid')}/v1/requests/{rid}/whistle", headers=worker, json={
            "departments": [dep], "reason": "Needs enforcement on site", "report_back_hours": 2})
        if r.status_code == 200:
            self.stats["whistles"] += 1

    async def ask_volunteers(self, rid: str, worker: dict[str, str]) -> bool:
        """A visit tomorrow at 10:00 in the district (the demo volunteers serve by day)."""
        day = datetime.now(OFFICE) + timedelta(days=1)
        r = await self.client.post(f"{url('grid')}/v1/requests/{rid}/volunteers", headers=worker, json={
            "needed_from": day.replace(hour=10, minute=0, second=0, microsecond=0).isoformat(), "needed_hours": 2})
        if r.status_code == 200:
            self.stats["volunteer_asks"] += 1
        return r.status_code == 200

    async def department(self, rid: str, dispatch_id: str, dep: str) -> None:
        h = bearer("department", sub=dep)
        await asyncio.sleep(self.delay(40))
        await self.client.post(f"{url('grid')}/v1/requests/{rid}/dispatches/{dispatch_id}/acknowledge", headers=h)
        late = random.random() < LATE_SHARE
        await asyncio.sleep(self.real_delay(LATE_DEPARTMENT_HOURS) if late else self.delay(60))
        r = await self.client.post(f"{url('grid')}/v1/requests/{rid}/dispatches/{dispatch_id}/report", headers=h,
                                   json={"outcome": "Inspected and corrected"})
        if r.status_code == 200:
            self.stats["department_reports"] += 1

    async def volunteer(self, rid: str) -> None:
        await asyncio.sleep(self.delay(15))
        r = await self.client.get(f"{url('matching')}/matches/{rid}", headers=bearer("supervisor"))
        if r.status_code != 200:
            return
        offers = [o for o in r.json().get("offers", []) if o.get("status") == "open"]
        for o in offers:
            vol = bearer("volunteer", sub=o["volunteer_id"])
            if random.random() < 0.2:
                await self.client.post(f"{url('matching')}/me/offers/{o['offer_id']}/decline", headers=vol,
                                       json={"reason": "busy"})
                continue
            r = await self.client.post(f"{url('matching')}/me/offers/{o['offer_id']}/accept", headers=vol)
            if r.status_code != 200:
                continue
            self.stats["volunteer_accepts"] += 1
            await asyncio.sleep(self.delay(60))
            await self.client.post(f"{url('matching')}/me/assignments/{rid}/check-in", headers=vol)
            await asyncio.sleep(self.delay(90))
            await self.client.post(f"{url('matching')}/me/assignments/{rid}/check-out", headers=vol)
            r = await self.client.post(f"{url('matching')}/me/assignments/{rid}/complete", headers=vol,
                                       json={"note": "Service delivered"})
            if r.status_code == 200:
                self.stats["volunteer_services"] += 1
            return

    # -- observation

    async def observe(self) -> None:
        """Each service's health and consumer lag every 2 s; supervision's figures every 10 s, one
        query at a time and waited for (a query given up on would go on running in audit, and
        the next one would pile on it)."""
        while True:
            for svc in PORTS:
                try:
                    r = await self.client.get(f"{url(svc)}/health/ready", timeout=3)
                    body = r.json()
                    self.lag[svc] = ("ready" if r.status_code == 200 else "NOT READY",
                                     sum(body.get("consumer_lag", {}).values()))
                except Exception:  # noqa: BLE001
                    self.lag[svc] = ("down", None)
            await asyncio.sleep(2)

    async def observe_supervision(self) -> None:
        while True:
            today = datetime.now(OFFICE).date().isoformat()  # the office's day, not this machine's
            try:
                sup = bearer("supervisor")
                r = await self.client.get(f"{url('audit')}/kpis", headers=sup, timeout=120, params={
                    "dimension": "all", "key": "*", "from": self.since.isoformat(), "to": today})
                if r.status_code == 200:
                    self.kpis = r.json()
                r = await self.client.get(f"{url('audit')}/supervision/overdue", headers=sup, timeout=120,
                                          params={"limit": 1000})
                if r.status_code == 200:
                    self.overdue = len(r.json())
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"audit: {exc!r}")
            await asyncio.sleep(10)

    def view(self) -> Group:
        now = time.monotonic()
        recent = sum(1 for t in self.submitted_at if now - t <= 10) / 10
        top = Table.grid(padding=(0, 3))
        top.add_row(f"[bold]requests/s[/] {recent:5.1f} (target {self.rate})",
                    f"[bold]submitted[/] {self.stats['submitted']}", f"[bold]merged[/] {self.stats['merged']}",
                    f"[bold]accepted[/] {self.stats['accepted']}", f"[bold]resolved[/] {self.stats['resolved']}",
                    f"[bold]volunteer services[/] {self.stats['volunteer_services']}",
                    f"[bold]in flight[/] {len(self.tasks)}")
        top.add_row(f"[bold]late accepts[/] {self.stats['late_accepts']}",
                    f"[bold]whistles[/] {self.stats['whistles']}",
                    f"[bold]department reports[/] {self.stats['department_reports']}",
                    f"[bold]volunteer asks[/] {self.stats['volunteer_asks']}",
                    f"[bold]unsatisfied[/] {self.stats['rated_unsatisfied']}", "", "")
        b = self.backlog.stats
        if b["imported"] or b["already_imported"]:
            top.add_row(f"[bold]backlog[/] {b['imported'] + b['already_imported']} imported",
                        f"[bold]handled since[/] {b['resolved']} resolved", f"[bold]left open[/] {b['open']}",
                        f"[bold]with departments[/] {b['department_cases']}",
                        f"[bold]need volunteers[/] {b['volunteer_cases']}",
                        f"[bold]unsatisfied[/] {b['rated_unsatisfied']}", "")
        svc = Table(title="services", expand=True)
        for c in ("service", "health", "consumer lag"):
            svc.add_column(c)
        for name, (health, lag) in sorted(self.lag.items()):
            svc.add_row(name, health, "-" if lag is None else str(lag))
        k = self.kpis

        def pct(v):
            return "-" if v is None else f"{v:.1%}"

        def hours(v):
            return "-" if v is None else f"{v:.1f} h"

        rates = Table(title=f"supervision, requests received since {self.since} (all areas)", expand=True)
        for c in ("received", "open", "overdue now", "escalations", "dispatched",
                  "response rate", "resolution rate", "satisfaction rate", "handling median / p90"):
            rates.add_column(c)
        rates.add_row(str(k.get("received", "-")), str(max(0, k.get("counted", 0) - k.get("resolved", 0))),
                      str(self.overdue), str(k.get("escalations", "-")),
                      str(k.get("dispatched", "-")), pct(k.get("response_rate")), pct(k.get("resolution_rate")),
                      pct(k.get("satisfaction_rate")),
                      f"{hours(k.get('median_handling_hours'))} / {hours(k.get('p90_handling_hours'))}")
        parts = [Panel(top, title=f"civicgrid simulated day · ×{self.scale:g} time"), svc, rates]
        if self.errors:
            parts.append(Panel("\n".join(self.errors), title="recent errors"))
        return Group(*parts)

    async def run(self, duration: float) -> None:
        await self.load()
        await self.backlog.seed()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        observers = [asyncio.create_task(self.observe()), asyncio.create_task(self.observe_supervision())]
        started = time.monotonic()
        with Live(self.view(), refresh_per_second=2, screen=False) as live:
            next_at = time.monotonic()
            while not stop.is_set() and (not duration or time.monotonic() - started < duration):
                now = time.monotonic()
                while next_at <= now:
                    self.spawn(self.resident())
                    next_at += random.expovariate(self.rate)
                live.update(self.view())
                try:
                    await asyncio.wait_for(stop.wait(), timeout=min(0.2, max(0.0, next_at - time.monotonic())))
                except asyncio.TimeoutError:
                    pass
        for observer in observers:
            observer.cancel()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.aclose()
        print(f"simulation stopped: {dict(self.stats)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=2.0, help="residents' requests per second")
    parser.add_argument("--time-scale", type=float, default=60.0,
                        help="how much faster than real time people react (work and lateness take real time)")
    parser.add_argument("--backlog", type=int, default=600,
                        help="open cases of the old hotline imported before the live day (0 = none)")
    parser.add_argument("--backlog-days", type=float, default=2.0, help="how far back the backlog was received")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until Ctrl-C")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    random.seed(args.seed)
    asyncio.run(Day(args.rate, args.time_scale, backlog=args.backlog, backlog_days=args.backlog_days,
                    seed=args.seed).run(args.duration))


if __name__ == "__main__":
    main()
