"""Matching's handlers: each loads aggregates through the storage port, calls the domain, saves
and thereby publishes (the adapter hands the recorded events to the runtime's outbox).

``context.Matching`` is what every handler receives; the modules group them by who calls:
``consumed`` (events from the bus), ``offers`` and ``hours`` (volunteers and staff over HTTP,
and the expiry job), ``registry`` (staff), ``queries`` (read side), ``sync`` (the index).
"""

from civicgrid_matching.handlers.context import Matching

__all__ = ["Matching"]
