"""Lifecycle events of grid, matching and audit -> the request's status (event -> handler)."""

from __future__ import annotations

from civicgrid_runtime.bus import BatchHandler, Delivery


def lifecycle_handler(handlers) -> BatchHandler:
    async def handle(batch: list[Delivery]) -> None:
        # a request's events come from one partition, in the order they were published
        await handlers.lifecycle.apply_events([d.envelope for d in batch])

    return handle
