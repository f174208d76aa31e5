"""Exceptions raised while decoding events from the bus."""


class ContractError(Exception):
    """Base of every contract error."""


class MalformedEvent(ContractError):
    """A message that is not a valid civicgrid CloudEvent; the reason says what is wrong."""


class UnknownEventType(MalformedEvent):
    def __init__(self, event_type: str) -> None:
        super().__init__(f"unknown event type {event_type!r}")
        self.event_type = event_type
