"""Event payloads, one module per stream. Importing this package registers every event type."""

from civicgrid_contracts.events import access, audit, calendar, catalogue, grid, intake, matching  # noqa: F401
