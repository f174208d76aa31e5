"""The roster's administration: a post's A and B, staff profiles and duty. Each change loads what
it changes, lets the domain decide, and saves it guarded by the version the caller read, with the
administrative change event (for audit's trail) in the same single-document write."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from civicgrid_grid.domain.errors import ChangedMeanwhile, NotAllowed, NotFound, UnknownReference
from civicgrid_grid.domain.roster import PostView, StaffMember, level_of, view_of
from civicgrid_grid.handlers.context import ATTEMPTS, GridContext, now
from civicgrid_runtime.access import admin_change
from civicgrid_runtime.auth import Principal


def changed_meanwhile(what: str, version: int | None = None) -> ChangedMeanwhile:
    now_at = f" (it is at version {version} now)" if version is not None else ""
    return ChangedMeanwhile(f"{what} changed meanwhile{now_at}; reload and retry.")


class RosterAdmin:
    def __init__(self, ctx: GridContext) -> None:
        self.ctx = ctx

    def moment(self) -> tuple[date, datetime]:
        """Now, and the district's day it is (a leave "until" a day ends with that day there)."""
        at = now()
        return at.astimezone(self.ctx.tz).date(), at

    # ---------------------------------------------------------------------------- reads
    async def member(self, sid: str) -> StaffMember:
        m = await self.ctx.staff.member(sid)
        if m is None:
            raise NotFound(f"No staff member {sid}.")
        return m

    def unavailable(self, m: StaffMember) -> str | None:
        """Why the person would not get a new request now for their duty (None: they would)."""
        today, at = self.moment()
        return m.as_candidate().unavailable_because(today, at)

    async def members_of_area(self, area: str) -> list[StaffMember]:
        return await self.ctx.staff.members_under(area)

    async def posts_of_area(self, area: str) -> list[PostView]:
        return await self._views(await self.ctx.roster.posts_under(area))

    async def posts_of_member(self, sid: str) -> list[PostView]:
        await self.member(sid)
        return await self._views(await self.ctx.roster.posts_held_by(sid))

    async def _views(self, posts) -> list[PostView]:
        people = await self.ctx.staff.members(sorted({sid for p in posts for sid in (p.a, p.b) if sid}))
        today, at = self.moment()
        return [view_of(p, people, today, at) for p in posts]

    # ---------------------------------------------------------------------------- changes
    async def change_post(self, actor: Principal, pid: str, *, a: str, b: str | None, version: int,
                          reason: str | None = None) -> PostView:
        post = await self.ctx.roster.post(pid)
        if post is None:
            raise NotFound(f"No post {pid}.")
        if post.version != version:
            raise changed_meanwhile(f"Post {pid}", post.version)
        people = await self.ctx.staff.members([sid for sid in (a, b) if sid])
        for field, sid in (("a", a), ("b", b)):
            if sid and sid not in people:
                raise UnknownReference(field, "staff member", [sid], f"No staff member {sid}.")
        changes = post.change_holders(people.get(a), people.get(b) if b else None)
        if changes:
            event = admin_change(actor, "roster.post", pid, source=self.ctx.source, reason=reason,
                                 details={**changes, "area": post.area, "line": post.line})
            if not await self.ctx.roster.save_post(post, [event]):
                raise changed_meanwhile(f"Post {pid}")
        [view] = await self._views([post])
        return view

    async def add_member(self, actor: Principal, sid: str, *, name: str, role: str, area: str, lines: list[str],
                         limit: int, reason: str | None = None) -> StaffMember:
        self._known_area(area)
        member = StaffMember.new(sid, name=name, role=role, area=area, lines=lines, limit=limit)
        event = admin_change(actor, "roster.staff_create", sid, source=self.ctx.source, reason=reason,
                             details={"role": role, "area": area, "lines": ",".join(member.lines), "limit": limit})
        if not await self.ctx.staff.create(member, [event]):
            raise NotAllowed(f"Staff id {sid} is taken.")
        return member

    async def update_member(self, actor: Principal, sid: str, *, name: str, role: str, area: str, lines: list[str],
                            limit: int, active: bool, version: int, reason: str | None = None) -> StaffMember:
        member = await self.member(sid)
        if member.version != version:
            raise changed_meanwhile(f"Staff member {sid}", member.version)
        if area != member.area:
            self._known_area(area)
        held = await self.ctx.roster.posts_held_by(sid)
        changes = member.update_profile(name=name, role=role, area=area, lines=lines, limit=limit, active=active,
                                        held=held)
        if changes:
            event = admin_change(actor, "roster.staff_update", sid, source=self.ctx.source, reason=reason,
                                 details=changes)
            if not await self.ctx.staff.save_member(member, [event]):
                raise changed_meanwhile(f"Staff member {sid}")
        return member

    async def set_duty(self, actor: Principal, sid: str, *, duty: str, leave_until: str | None = None,
                       away_until: datetime | None = None, limit: int | None = None, version: int | None = None,
                       reason: str | None = None) -> StaffMember:
        """Set someone's duty. With ``version``: only if nothing changed since the caller read it;
        without (older callers): guarded by the version just read, tried again on a lost race (a duty
        is set whole, whatever it was)."""
        for _attempt in range(ATTEMPTS):
            member = await self.member(sid)
            if version is not None and member.version != version:
                raise changed_meanwhile(f"Staff member {sid}", member.version)
            today, at = self.moment()
            details: dict[str, Any] = member.set_duty(duty, leave_until=leave_until, away_until=away_until,
                                                      limit=limit, today=today, now=at)
            if actor.sub == sid:
                details["self"] = True
            event = admin_change(actor, "roster.duty", sid, source=self.ctx.source, reason=reason, details=details)
            if await self.ctx.staff.save_member(member, [event]):
                return member
            if version is not None:
                raise changed_meanwhile(f"Staff member {sid}")
        raise ChangedMeanwhile(f"Staff member {sid} kept changing; retry.")

    def _known_area(self, area: str) -> None:
        city = self.ctx.require_city()
        level = level_of(area)
        if level is None or city.layer(level).index_of(area) is None:
            raise UnknownReference("area", "area", [area], f"Area {area} is not in map version {city.version}.")
