"""Keeping the in-memory index and the catalogue cache in step with the store."""

from __future__ import annotations

from civicgrid_matching.domain.schedule import Schedule
from civicgrid_matching.domain.volunteer import Volunteer
from civicgrid_matching.handlers.context import Matching


async def load(ctx: Matching) -> None:
    """Start-up: the catalogue and every volunteer and schedule."""
    for svc in await ctx.store.catalogue.all():
        ctx.catalogue[svc.code] = svc
    await refresh_index(ctx)


async def refresh_index(ctx: Matching) -> int:
    """Pick up volunteers and schedules changed since the last look (also other replicas')."""
    vols = await ctx.store.volunteers.changed_since(ctx.volunteers_seen)
    for v in vols:
        ctx.index.upsert(v)
        ctx.volunteers_seen = max(ctx.volunteers_seen or v.updated_at, v.updated_at)
    for s in await ctx.store.schedules.changed_since(ctx.schedules_seen):
        ctx.index.set_bookings(s.volunteer_id, s.active())
        if s.updated_at:
            ctx.schedules_seen = max(ctx.schedules_seen or s.updated_at, s.updated_at)
    return len(vols)


def volunteer_changed(ctx: Matching, v: Volunteer) -> None:
    ctx.index.upsert(v)


def schedule_changed(ctx: Matching, s: Schedule) -> None:
    ctx.index.set_bookings(s.volunteer_id, s.active())
