"""Why the domain refuses a command. Entrypoints translate these to problem details; nothing in
the domain knows about HTTP."""

from __future__ import annotations


class GridError(Exception):
    """A rule of a request's handling refused the command."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(GridError):
    """The request, dispatch or staff member named does not exist (for this caller)."""


class NotAllowed(GridError):
    """The request's state does not allow the action (e.g. resolving a rejected request)."""


class ChangedMeanwhile(GridError):
    """Another writer changed the request between our read and our write; the caller may retry."""


class UnknownReference(GridError):
    """A command names something unknown (a department, a grid, a staff member)."""

    def __init__(self, field: str, what: str, values: list[str], message: str) -> None:
        super().__init__(message)
        self.field, self.what, self.values = field, what, values


class InvalidValue(GridError):
    """A command's value breaks a rule (of the roster, say): the field is named."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.reason = field, message
