"""Staff actions: load the request, let the aggregate decide, save it with its events. Each is one
version-guarded single-document write; a lost race answers ``ChangedMeanwhile`` (the caller retries)."""

from __future__ import annotations

import uuid
from datetime import datetime

from civicgrid_contracts.calendar import due_at
from civicgrid_grid.domain.assignment import line_for
from civicgrid_grid.domain.citymap import Located
from civicgrid_grid.domain.errors import ChangedMeanwhile, NotAllowed, NotFound, UnknownReference
from civicgrid_grid.domain.request import Holder, RequestCase
from civicgrid_grid.handlers.assigning import decide_many
from civicgrid_grid.handlers.context import GridContext, envelopes, give_back_load, now


class Commands:
    def __init__(self, ctx: GridContext) -> None:
        self.ctx = ctx

    async def load(self, rid: str) -> RequestCase:
        case = await self.ctx.requests.get(rid)
        if case is None:
            raise NotFound(f"No request {rid} is known to grid.")
        return case

    async def _save(self, case: RequestCase, *, reserved: str | None = None) -> RequestCase:
        if not await self.ctx.requests.save(case, envelopes(self.ctx, case)):
            if reserved:
                await self.ctx.staff.release(reserved, case.id)
            raise ChangedMeanwhile("The request changed meanwhile; retry.")
        await give_back_load(self.ctx, case)
        return case

    async def accept(self, case: RequestCase, staff_id: str) -> RequestCase:
        case.accept(staff_id, now())
        return await self._save(case)

    async def note(self, case: RequestCase, staff_id: str, note: str) -> RequestCase:
        case.note(staff_id, note, now())
        return await self._save(case)

    async def ask_volunteers(self, case: RequestCase, staff_id: str, needed_from: datetime | None, hours: float,
                             recurring: bool) -> RequestCase:
        t = now()
        case.ask_volunteers(staff_id, needed_from or t, hours, recurring, t)
        return await self._save(case)

    async def whistle(self, case: RequestCase, staff_id: str, departments: list[str], reason: str,
                      report_back_hours: float | None) -> RequestCase:
        unknown = sorted(set(departments) - await self.ctx.roster.known_departments(departments))
        if unknown:
            raise UnknownReference("departments", "department", unknown, f"Unknown departments: {', '.join(unknown)}")
        t = now()
        report_by = due_at(t, report_back_hours or self.ctx.default_report_back_hours, case.calendar,
                           self.ctx.calendar.calendar)
        case.whistle(str(uuid.uuid4()), departments, reason, report_by, t, by=staff_id)
        return await self._save(case)

    async def acknowledge(self, case: RequestCase, dispatch_id: str, department: str) -> RequestCase:
        case.acknowledge(dispatch_id, department, now())
        if not case.events:
            return case  # acknowledged before: nothing changes
        return await self._save(case)

    async def report(self, case: RequestCase, dispatch_id: str, department: str, outcome: str) -> RequestCase:
        case.report(dispatch_id, department, outcome, now())
        return await self._save(case)

    async def resolve(self, case: RequestCase, staff_id: str, note: str) -> RequestCase:
        case.resolve(staff_id, note, now())
        return await self._save(case)

    async def reject(self, case: RequestCase, staff_id: str, reason: str) -> RequestCase:
        case.reject(staff_id, reason, now())
        return await self._save(case)

    async def transfer(self, case: RequestCase, staff_id: str, to_grid: str, reason: str) -> RequestCase:
        city = self.ctx.require_city()
        if city.grids.index_of(to_grid) is None:
            raise UnknownReference("to_grid", "grid", [to_grid], f"Grid {to_grid} is not in map version {city.version}.")
        if not case.is_open:  # before reserving anyone's load
            raise NotAllowed(f"Cannot transfer a {case.status!r} request.")
        loc = Located("transfer", district=to_grid[:6], street=to_grid[:9], community=to_grid[:12], grid=to_grid)
        [holder] = await decide_many(self.ctx, [(case.id, loc, line_for(case.service_group, case.service_code))])
        company = city.property_company(to_grid[:12]) if "property" in case.handled_by else None
        reserved = holder.load_holder if holder.load_holder != case.load_holder else None
        case.transfer(staff_id, to_grid, reason, holder, now(), property_company=company)
        return await self._save(case, reserved=reserved)

    async def reassign(self, case: RequestCase, supervisor: str, to_staff: str, reason: str) -> RequestCase:
        target = await self.ctx.staff.get(to_staff)
        if target is None:
            raise UnknownReference("to_staff", "staff member", [to_staff], f"No staff member {to_staff}.")
        if not case.is_open:
            raise NotAllowed(f"Cannot reassign a {case.status!r} request.")
        reserved = to_staff if to_staff != case.load_holder else None  # a new unit of load, given back on failure
        await self.ctx.staff.reserve_many([(to_staff, case.id, False)])
        case.reassign(supervisor, Holder(to_staff, "supervisor", target.get("level") or "grid",
                                         f"supervisor {supervisor}: {reason}", load_holder=to_staff), now())
        return await self._save(case, reserved=reserved)
