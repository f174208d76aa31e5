"""What a rule of matching's domain raises when it refuses a command.

Each class carries a machine-readable ``code`` (the problem type in HTTP answers) and the HTTP
status the entrypoint answers with; the domain itself knows nothing of HTTP beyond that number.
"""

from __future__ import annotations


class MatchingError(Exception):
    """A rule of the domain refused the command."""

    code = "refused"
    status = 409

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFound(MatchingError):
    code, status = "not_found", 404


class OutsideArea(MatchingError):
    """The record is outside the caller's area scope (``domain.scope``); grid answers so too."""

    code, status = "forbidden", 403


class NotAssigned(NotFound):
    """The volunteer is not the one who won the request."""

    code = "not_assigned"


class AlreadyRegistered(MatchingError):
    code = "exists"


class OfferClosed(MatchingError):
    """The offer is no longer open (``offer_declined``, ``offer_expired``, ``offer_withdrawn`` ...)."""

    def __init__(self, status: str) -> None:
        super().__init__(f"This offer is {status}", code=f"offer_{status}")


class Taken(MatchingError):
    code = "taken"


class DoubleBooked(MatchingError):
    code = "double_booked"


class HoursCapExceeded(MatchingError):
    code = "hours_cap"


class WrongState(MatchingError):
    code = "wrong_state"


class NotCheckedIn(MatchingError):
    code = "not_checked_in"


class NotCheckedOut(MatchingError):
    code = "not_checked_out"


class Busy(MatchingError):
    """Too many concurrent changes to one document; the caller may retry."""

    code, status = "busy", 503
