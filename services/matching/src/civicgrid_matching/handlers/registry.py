"""Staff commands on the volunteer registry, and the changes other handlers make to a volunteer's
record (stats, ratings, whom they serve).

Staff reach only the volunteers of their area (``domain.scope.AreaScope``): every command takes the
caller's scope; the service's own changes and a volunteer's own record pass ``DISTRICT``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from civicgrid_matching.domain.errors import AlreadyRegistered, NotFound
from civicgrid_matching.domain.scope import DISTRICT, AreaScope
from civicgrid_matching.domain.volunteer import Qualification, Volunteer
from civicgrid_matching.handlers.context import Matching, until_saved
from civicgrid_matching.handlers.sync import volunteer_changed


async def register(ctx: Matching, profile: dict[str, Any], by: str, vid: str | None = None, *,
                   scope: AreaScope) -> Volunteer:
    scope.require(profile.get("community"), "The volunteer's home")
    v = Volunteer.register(vid or f"vol-{uuid.uuid4().hex[:12]}", profile, by=by, now=ctx.clock())
    await ctx.store.volunteers.add(v)
    volunteer_changed(ctx, v)
    return v


async def get(ctx: Matching, vid: str, *, scope: AreaScope) -> Volunteer:
    """The volunteer (404 when there is none, 403 when they live outside ``scope``)."""
    v = await ctx.store.volunteers.get(vid)
    if v is None:
        raise NotFound(f"No volunteer {vid}")
    scope.require(v.community, f"Volunteer {vid}")
    return v


async def change_volunteer(ctx: Matching, vid: str, change: Callable[[Volunteer], bool | None], *,
                           scope: AreaScope) -> Volunteer:
    """Apply ``change`` (False: nothing changed, no write) and save, guarded by the version read."""
    async def attempt() -> Volunteer | None:
        v = await get(ctx, vid, scope=scope)
        if change(v) is False:
            return v
        return v if await ctx.store.volunteers.save(v) else None

    v = await until_saved(attempt, f"Volunteer {vid}")
    volunteer_changed(ctx, v)
    return v


async def update(ctx: Matching, vid: str, profile: dict[str, Any], *, scope: AreaScope) -> Volunteer:
    def change(v: Volunteer) -> None:
        if "community" in profile:  # nobody moves a volunteer out of their own reach
            scope.require(profile["community"], f"Volunteer {vid}'s new home")
        v.change(profile, ctx.clock())

    return await change_volunteer(ctx, vid, change, scope=scope)


async def verify_qualification(ctx: Matching, vid: str, code: str, expires_on: date | None, evidence: str | None,
                               by: str, *, scope: AreaScope) -> Volunteer:
    # valid to the end of its last day, in the service's time zone
    expires = datetime.combine(expires_on, time(23, 59, 59), tzinfo=ctx.tz).astimezone(UTC) if expires_on else None
    return await change_volunteer(ctx, vid, lambda v: v.verify(Qualification(code, by, ctx.clock(), expires,
                                                                              evidence)), scope=scope)


async def count(ctx: Matching, vid: str, stat: str) -> Volunteer:
    return await change_volunteer(ctx, vid, lambda v: v.count(stat, ctx.clock()), scope=DISTRICT)


async def import_roster(ctx: Matching, rows: list, by: str) -> dict[str, int]:
    """Register each row (a ``schemas.RosterRow``) and verify its qualifications for a year; rows
    whose id is registered already are left as they are."""
    created = existing = 0
    for row in rows:
        try:
            await register(ctx, row.model_dump(mode="python", exclude={"id", "qualifications"}), by, row.id,
                           scope=DISTRICT)
        except AlreadyRegistered:
            existing += 1
            continue
        created += 1
        for code in row.qualifications:
            await verify_qualification(ctx, row.id, code, ctx.clock().date() + timedelta(days=365), "roster", by,
                                       scope=DISTRICT)
    return {"created": created, "already_there": existing}
