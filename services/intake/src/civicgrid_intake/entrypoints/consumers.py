"""Lifecycle events of grid, matching and audit -> the request's status (event -> handler)."""

from __future__ import annotations

from civicgrid_runtime.bus import BatchHandler, Delivery


def lifecycle_handler(handlers) -> BatchHandler:
    async def handle(batch: list[Delivery]) -> None:
        # one partition, in order: a request's events are applied in the order they were published
        for d in batch:
            await handlers.apply_event(d.envelope)

    return handle
