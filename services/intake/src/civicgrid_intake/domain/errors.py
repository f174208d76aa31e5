"""Domain errors; the entrypoints translate them (problem details natively, the Open311 error list)."""

from __future__ import annotations


class IntakeError(Exception):
    status = 400
    title = "Bad request"
    field: str | None = None

    def __init__(self, detail: str, *, field: str | None = None, errors: list[dict] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field or self.field
        self.errors = errors or ([{"field": self.field, "message": detail}] if self.field else None)


class InvalidRequest(IntakeError):
    status, title = 422, "Invalid request"


class UnknownService(IntakeError):
    status, title, field = 422, "Unknown service", "service_code"


class NotFound(IntakeError):
    status, title = 404, "Not found"


class Conflict(IntakeError):
    status, title = 409, "Conflict"


class IdempotencyConflict(Conflict):
    title = "Idempotency-Key reused with a different body"


class Forbidden(IntakeError):
    status, title = 403, "Forbidden"


class StaleRevision(IntakeError):
    """An administrator's change was made on an older revision than the one stored (If-Match)."""

    status, title = 412, "Changed since you read it"

    def __init__(self, what: str, *, current: int, expected: int) -> None:
        super().__init__(
            f"{what} is at revision {current}, your change was made on revision {expected}: someone else changed it "
            "since you read it. Read it again (its ETag names the revision) and make your change on that version.",
            errors=[{"field": "If-Match", "in": "header",
                     "message": f"revision {expected} is not the current one ({current})"}])
        self.current_revision = current
        self.expected_revision = expected
