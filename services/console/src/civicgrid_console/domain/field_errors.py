"""Errors shown next to the form field they are about.

A form the console sends to a service comes back refused with problem details whose ``errors[]``
name a field of the API's body (``periods/1``, ``attributes/0/values``). Each form knows which of
its fields produced which part of the body (``where``); this module places every error on its field
and words it in the visitor's language: the console's own message when it knows the kind of problem
(pydantic's error ``type``, or the shape of a message the service is known to send), the service's
own words otherwise, so nothing the service said is ever dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from civicgrid_console.domain import i18n

#: pydantic's error types the services' validation answers carry, in the console's words
VALIDATION_TYPES = {
    "missing": "fielderr.missing",
    "string_too_short": "fielderr.too_short",
    "string_too_long": "fielderr.too_long",
    "too_short": "fielderr.too_few",
    "too_long": "fielderr.too_many",
    "string_pattern_mismatch": "fielderr.pattern",
    "greater_than": "fielderr.not_positive",
    "greater_than_equal": "fielderr.out_of_range",
    "less_than_equal": "fielderr.out_of_range",
    "less_than": "fielderr.out_of_range",
    "float_parsing": "fielderr.number",
    "int_parsing": "fielderr.whole_number",
    "literal_error": "fielderr.choice",
    "enum": "fielderr.choice",
    "time_parsing": "fielderr.time",
    "date_parsing": "fielderr.date",
    "date_from_datetime_parsing": "fielderr.date",
    "extra_forbidden": "fielderr.unknown_field",
}

#: messages intake is known to send (the working calendar's defects, the catalogue's own rules), by
#: their shape; the named groups fill the console's wording
KNOWN_MESSAGES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), k) for p, k in (
    (r"unknown time zone '(?P<zone>[^']*)'", "fielderr.cal_unknown_zone"),
    (r"(?P<day>-?\d+) is not an ISO weekday", "fielderr.cal_bad_weekday"),
    (r"a weekday is listed twice", "fielderr.cal_weekday_twice"),
    (r"period (?P<period>\S+) ends before it starts", "fielderr.cal_period_backwards"),
    (r"period (?P<period>\S+) overlaps (?P<other>\S+)", "fielderr.cal_period_overlap"),
    (r"(?P<day>\d{4}-\d{2}-\d{2}) is not in (?P<year>\d{4})", "fielderr.cal_outside_year"),
    (r"(?P<day>\d{4}-\d{2}-\d{2}) is both a holiday and a make-up working day", "fielderr.cal_both"),
    (r"(?P<year>\d{4}) has no working day", "fielderr.cal_no_working_day"),
    (r"a (?P<datatype>\w+) needs values", "fielderr.attr_needs_values"),
    (r"attribute codes must be unique", "fielderr.attr_codes_unique"),
    (r"must name the departments to whistle", "fielderr.departments_needed"),
))


def wording(lang: str, error: dict[str, Any]) -> str:
    """One error of a problem-details answer in ``lang``."""
    message = str(error.get("message") or error.get("reason") or "")
    for pattern, key in KNOWN_MESSAGES:
        m = pattern.search(message)
        if m:
            return i18n.t(lang, key, **{k: named(lang, k, v) for k, v in m.groupdict().items()})
    key = VALIDATION_TYPES.get(str(error.get("type") or ""))
    if key:
        return i18n.t(lang, key)
    return message or i18n.t(lang, "error.invalid_form")


def named(lang: str, kind: str, value: str) -> str:
    """A value quoted from a message in the console's words where it has some (an attribute type)."""
    key = f"attr_type.{value}"
    return i18n.t(lang, key) if kind == "datatype" and i18n.has(key) else value


@dataclass
class FieldErrors:
    """Messages by form field id (shown next to the field) and those no field owns (shown on top)."""

    by_field: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def add(self, field_id: str | None, text: str) -> None:
        if field_id:
            self.by_field.setdefault(field_id, []).append(text)
        else:
            self.general.append(text)

    def __bool__(self) -> bool:
        return bool(self.by_field or self.general)

    def of(self, field_id: str) -> list[str]:
        return self.by_field.get(field_id, [])


def place(lang: str, errors: list[dict[str, Any]], where: Callable[[str], str | None]) -> FieldErrors:
    """Each API error on the form field ``where`` names for its body path (none: on top)."""
    out = FieldErrors()
    for e in errors:
        path = str(e.get("field") or "")
        out.add(where(path) if path else None, wording(lang, e))
    return out


def local(lang: str, errors: list[tuple[str, str]]) -> FieldErrors:
    """The console's own findings (field id, message key) before anything was sent."""
    out = FieldErrors()
    for field_id, key in errors:
        out.add(field_id, i18n.t(lang, key))
    return out
