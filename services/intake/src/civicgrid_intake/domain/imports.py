"""Importing open cases from the hotline system a city replaces: an administrator's batch.

An imported case keeps its original received time. Its deadlines are computed from that time by
the one ``due_at`` (``RequestReceived.starting_clocks``), so a case that was already late in the
old system is late here from the first minute, and supervision escalates it like any other. The
import is idempotent by the legacy system's own case reference: the request id derives from
(system, reference), and importing the same case again answers what the first import did.

The rules every item must meet are here, each defect naming its field as ``items/<n>/<field>``;
the batch is refused as a whole (nothing imported) while any item has one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from civicgrid_contracts.values import Channel
from civicgrid_intake.domain.catalogue import AnswerErrors, ServiceDef, validate_answers
from civicgrid_intake.domain.commands import SubmitRequest

#: the request id of an imported case derives from (system, reference) in this namespace
IMPORT_NS = uuid.UUID("5d0c3a51-7d8e-4b0f-a3b9-2f6c1e9a4d77")
#: items per call: a batch of this size stays well under intake's body limit (64 KiB by default)
MAX_ITEMS = 100


class ImportedCase(SubmitRequest):
    """One open case of the legacy system, as a request plus where and when it was received."""

    model_config = ConfigDict(extra="forbid")
    external_ref: str = Field(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$",
                              description="The case's reference in the legacy system (makes the import idempotent)")
    received_at: datetime = Field(description="When the legacy system received the case (ISO 8601 with a time "
                                              "zone; in the past, within the import window)")
    channel: Channel = "hotline"
    dispatched_at: datetime | None = Field(
        default=None, description="When the legacy system passed the case to the service's departments (only for "
                                  "services handled by departments; between received_at and now)")

    def fingerprint(self) -> str:
        """What a second import of the same reference must carry to be the same case (its times
        compared as instants: +08:00 and Z spellings of one moment are the same case). Called on
        checked items only: their times have a zone and lie within the import window."""
        same = self.model_copy(update={k: to_millisecond(v) for k in ("received_at", "dispatched_at")
                                       if (v := getattr(self, k)) is not None})
        return SubmitRequest.fingerprint(same)


class ImportBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "system": "hotline-12345", "items": [{
            "external_ref": "BJ-2026-118204", "received_at": "2026-12-01T09:40:00+08:00",
            "service_code": "sanitation", "location": {"lat": 39.9087, "lon": 116.3975},
            "description": "Rubbish not collected for three days", "attributes": {"waste_type": "household"}}]}]})
    system: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$",
                        description="The legacy system the cases come from (part of each case's identity)")
    items: list[ImportedCase] = Field(min_length=1, max_length=MAX_ITEMS)


@dataclass(frozen=True)
class CheckedCase:
    """An item that passed every rule, with its normalised answers and its request id."""

    index: int
    item: ImportedCase
    service: ServiceDef
    answers: dict[str, Any]
    request_id: str


def to_millisecond(t: datetime) -> datetime:
    """``t`` in UTC, to the millisecond: what the store keeps of an instant (so the event, the
    document and the deadlines computed from it hold the same instant)."""
    t = t.astimezone(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def import_id(system: str, reference: str) -> str:
    """The request id of the case ``reference`` of ``system``: the same on every import of it."""
    return str(uuid.uuid5(IMPORT_NS, f"{system}\n{reference}"))


def _defect(i: int, field: str, message: str) -> dict[str, str]:
    return {"field": f"items/{i}/{field}", "message": message}


def _time_defects(i: int, item: ImportedCase, now: datetime, window: timedelta) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    received, dispatched = item.received_at, item.dispatched_at
    if received.tzinfo is None:
        return [_defect(i, "received_at", "needs a time zone (e.g. +08:00)")]
    if received > now:
        out.append(_defect(i, "received_at", "is in the future: only cases already received can be imported"))
    elif received < now - window:
        out.append(_defect(i, "received_at", f"is more than {window.total_seconds() / 86400:g} days ago, outside the "
                                             "import window (INTAKE_IMPORT_WINDOW_DAYS)"))
    if dispatched is not None:
        if dispatched.tzinfo is None:
            out.append(_defect(i, "dispatched_at", "needs a time zone (e.g. +08:00)"))
        elif not received <= dispatched <= now:
            out.append(_defect(i, "dispatched_at", "must lie between received_at and now"))
    return out


def _service_defects(i: int, item: ImportedCase, service: ServiceDef | None) -> list[dict[str, str]]:
    if service is None or not service.active:
        return [_defect(i, "service_code", f"no active service {item.service_code!r}; see GET /api/v1/services")]
    if item.dispatched_at is not None and "department" not in service.handled_by:
        return [_defect(i, "dispatched_at", f"service {service.code!r} is not handled by departments")]
    return []


def check_batch(batch: ImportBatch, services: dict[str, ServiceDef], *, now: datetime,
                window: timedelta) -> tuple[list[CheckedCase], list[dict[str, str]]]:
    """Every item checked: the cases ready to import, and every defect found (each naming its field)."""
    defects: list[dict[str, str]] = []
    checked: list[CheckedCase] = []
    first_of: dict[str, int] = {}
    for i, item in enumerate(batch.items):
        found = _time_defects(i, item, now, window)
        if item.external_ref in first_of:
            found.append(_defect(i, "external_ref", f"{item.external_ref!r} is also items/{first_of[item.external_ref]}"
                                                    ": each case once per import"))
        first_of.setdefault(item.external_ref, i)
        service = services.get(item.service_code)
        found += _service_defects(i, item, service)
        answers: dict[str, Any] = {}
        if service is not None and service.active:
            try:
                answers = validate_answers(service, item.attributes)
            except AnswerErrors as exc:
                found += [_defect(i, e["field"], e["message"]) for e in exc.errors]
        defects += found
        if not found:
            checked.append(CheckedCase(i, item, service, answers, import_id(batch.system, item.external_ref)))
    return checked, defects
