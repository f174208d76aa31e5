"""How an aggregate records the events it causes: each with an id derived from what caused it, so a
change retried after a lost race or a crash records the same ids and readers drop the repeat."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from civicgrid_contracts import Envelope
from civicgrid_contracts.envelope import EventPayload, derived_event_id


@dataclass(frozen=True)
class Recorded:
    """An event an aggregate caused, ready to be wrapped in an envelope by the store adapter."""

    payload: EventPayload
    event_id: str
    causation_id: str | None
    correlation_id: str
    at: datetime

    def envelope(self, source: str) -> Envelope:
        return Envelope.wrap(self.payload, source=source, correlation_id=self.correlation_id,
                             causation_id=self.causation_id, event_id=self.event_id, time=self.at)


def record(payload: EventPayload, *, basis: str, discriminator: str, causation_id: str | None,
           correlation_id: str, at: datetime) -> Recorded:
    """``basis``: the id of the consumed event that directly caused this one, or, for a change a
    person or a job made, ``"{request id}|{generation}"`` of the match it belongs to."""
    return Recorded(payload, derived_event_id(basis, payload.event_type, discriminator), causation_id,
                    correlation_id, at)
