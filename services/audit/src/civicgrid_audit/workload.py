"""A deterministic synthetic workload of the platform's events (demo data, tests and the bench).

It plays the other services' part: intake's RequestReceived/Rated/Closed/Reopened, grid's
Assigned/Accepted/DepartmentDispatched/Reported/Resolved, matching's volunteer events. Used by
``civicgrid-audit simulate`` to give a demo district something to supervise; never in production.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from civicgrid_contracts import Envelope
from civicgrid_contracts.calendar import DEFAULT_CALENDAR
from civicgrid_contracts.events.grid import (
    DepartmentDispatched,
    DepartmentReported,
    RequestAccepted,
    RequestAssigned,
    RequestRejected,
    RequestResolved,
)
from civicgrid_contracts.events.intake import (
    RequestClosed,
    RequestMerged,
    RequestRated,
    RequestReceived,
    RequestReopened,
)
from civicgrid_contracts.events.matching import ServiceDelivered, VolunteerAccepted, VolunteerOffered
from civicgrid_contracts.values import AreaPath, Location, TimeLimits

DISTRICT = "110105"
DEPARTMENTS = ("chengguan", "scjg", "police")
SERVICES = (("S-REPAIR", "repairs", 4, 72), ("S-NOISE", "environment", 2, 48), ("S-ELDER", "elderly care", 8, 120),
            ("S-PROP", "property", 4, 96))


def area_of(i: int) -> AreaPath:
    street = f"{DISTRICT}{1 + i % 3:03d}"
    community = f"{street}{1 + (i // 3) % 3:03d}"
    grid = f"{community}{1 + (i // 9) % 4:03d}"
    return AreaPath(district=DISTRICT, street=street, community=community, grid=grid, building=f"{grid}-B{i % 7}")


def request_events(i: int, start: datetime, rng: random.Random, *, prefix: str = "R") -> list[Envelope]:
    rid = f"{prefix}{i:08d}"
    code, group, resp_h, res_h = SERVICES[i % len(SERVICES)]
    received = start + timedelta(minutes=7 * i % (60 * 24 * 80))
    area = area_of(i)
    staff = f"staff-{area.grid[-6:]}-{i % 2}"
    src_i, src_g, src_m = "/civicgrid/intake", "/civicgrid/grid", "/civicgrid/matching"
    out: list[Envelope] = []

    def add(payload, source, at):
        out.append(Envelope.wrap(payload, source=source, correlation_id=rid, time=at,
                                 event_id=f"{rid}-{len(out):02d}-{payload.event_type.rsplit('.', 1)[-1]}"))

    add(RequestReceived.starting_clocks(DEFAULT_CALENDAR, request_id=rid, service_code=code, service_name=code, service_group=group,
                        time_limits=TimeLimits(response_hours=resp_h, resolution_hours=res_h, report_back_hours=24,
                                               calendar="calendar"),
                        location=Location(building_id=area.building), description="synthetic request",
                        channel="hotline", reporter_id=f"rep-{i % 997}", received_at=received), src_i, received)
    roll = rng.random()
    if roll < 0.05:
        add(RequestMerged(request_id=rid, into_request_id=f"{prefix}{max(0, i - 1):08d}", distance_m=12.0,
                          followers=2), src_i, received + timedelta(seconds=5))
        return out
    t = received + timedelta(minutes=rng.randint(1, 20))
    add(RequestAssigned(request_id=rid, area=area, assignee_id=staff, holder="A", reason="A on duty", map_version=1,
                        assigned_at=t, property_company="prop-1" if code == "S-PROP" else None), src_g, t)
    if roll < 0.08:
        add(RequestRejected(request_id=rid, staff_id=staff, reason="out of scope", rejected_at=t + timedelta(hours=1)),
            src_g, t + timedelta(hours=1))
        return out
    t += timedelta(hours=rng.choice([0.5, 1, 2, 3, 6]))
    add(RequestAccepted(request_id=rid, staff_id=staff, accepted_at=t), src_g, t)
    if code == "S-ELDER":
        t1 = t + timedelta(minutes=10)
        add(VolunteerOffered(request_id=rid, offer_id=f"o-{rid}", volunteer_id=f"v-{i % 50}", rank=1, score=0.9,
                             distance_m=300.0, expires_at=t1 + timedelta(hours=1), offered_at=t1), src_m, t1)
        add(VolunteerAccepted(request_id=rid, offer_id=f"o-{rid}", volunteer_id=f"v-{i % 50}",
                              accepted_at=t1 + timedelta(minutes=5)), src_m, t1 + timedelta(minutes=5))
        add(ServiceDelivered(request_id=rid, volunteer_id=f"v-{i % 50}", hours=2.0, started_at=t1 + timedelta(hours=2),
                             ended_at=t1 + timedelta(hours=4)), src_m, t1 + timedelta(hours=4))
        t = t1 + timedelta(hours=4)
    if code == "S-NOISE":
        dept = DEPARTMENTS[i % 3]
        add(DepartmentDispatched(request_id=rid, dispatch_id=f"d-{rid}", departments=(dept,), joint=False,
                                 report_by=t + timedelta(hours=24), reason="enforcement", dispatched_at=t), src_g, t)
        t += timedelta(hours=rng.choice([4, 12, 30]))
        add(DepartmentReported(request_id=rid, dispatch_id=f"d-{rid}", department=dept, outcome="done",
                               reported_at=t, all_reported=True), src_g, t)
    if rng.random() < 0.85:
        t += timedelta(hours=rng.choice([2, 8, 24, 60, 100]))
        add(RequestResolved(request_id=rid, staff_id=staff, resolution_note="fixed", resolved_at=t), src_g, t)
        t += timedelta(hours=3)
        rating = rng.choice(["satisfied", "satisfied", "basically_satisfied", "unsatisfied"])
        add(RequestRated(request_id=rid, rating=rating, rated_at=t), src_i, t)
        if rating == "unsatisfied":
            add(RequestReopened(request_id=rid, reason="unsatisfied", reopened_at=t + timedelta(minutes=1)), src_i,
                t + timedelta(minutes=1))
        else:
            add(RequestClosed(request_id=rid, reason="rated", closed_at=t + timedelta(minutes=1)), src_i,
                t + timedelta(minutes=1))
    return out


def workload(n: int, *, seed: int = 7, start: datetime | None = None, prefix: str = "R"):
    """Yield each request's events (a list per request, in causal order)."""
    rng = random.Random(seed)
    start = start or datetime(2026, 10, 1, 1, 0, tzinfo=UTC)
    for i in range(n):
        yield request_events(i, start, rng, prefix=prefix)
