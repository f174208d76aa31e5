"""civicgrid's event contracts: the only code the services share besides the runtime.

    from civicgrid_contracts import Envelope, topics
    from civicgrid_contracts.events.intake import RequestReceived
"""

from civicgrid_contracts import (
    events,  # noqa: F401  (registers every event type)
    topics,
)
from civicgrid_contracts.envelope import Envelope, EventPayload, derived_event_id, registered_events, utcnow
from civicgrid_contracts.errors import ContractError, MalformedEvent, UnknownEventType

__all__ = [
    "ContractError", "Envelope", "EventPayload", "MalformedEvent", "UnknownEventType",
    "derived_event_id", "registered_events", "topics", "utcnow",
]
