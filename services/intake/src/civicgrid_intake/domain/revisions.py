"""The one rule of an administrator's save (catalogue, working calendar): it names the revision it
was made on, and a save made on an older revision is refused instead of silently undoing the other
administrator's change (ADR 0903)."""

from __future__ import annotations

from civicgrid_intake.domain.errors import StaleRevision


def require_revision(what: str, current: int, expected: int | None) -> None:
    """Refuse a change made on revision ``expected`` of ``what`` when ``current`` is stored;
    ``expected`` None: a save without a revision (an API client's or the CLI's) goes through."""
    if expected is not None and expected != current:
        raise StaleRevision(what, current=current, expected=expected)
