"""API schemas of the native JSON API (separate from the stored documents)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from civicgrid_contracts.calendar import CalendarYear, WorkingPeriod
from civicgrid_intake.domain.catalogue import ServiceDef, ServiceSpec
from civicgrid_intake.domain.commands import SubmitRequest


class RequestCreate(SubmitRequest):
    """A resident's request (JSON). Contact details are optional (anonymous reports are allowed)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "service_code": "sanitation", "location": {"lat": 39.9087, "lon": 116.3975},
        "description": "Garbage has not been collected for three days", "attributes": {"waste_type": "household"},
        "channel": "app", "contact": {"name": "Wang", "phone": "+86 138 0000 0000"}}]})


class RequestCreated(BaseModel):
    request_id: str
    token: str = Field(description="Keep it: it lets you read, rate and erase your request without an account")
    status: str
    duplicate_of: str | None = None
    followers: int | None = None
    expected_at: datetime
    service_code: str
    message: str


class HistoryEntry(BaseModel):
    at: datetime
    type: str
    status: str | None = None
    note: str | None = None


class RequestRead(BaseModel):
    request_id: str
    service_code: str
    service_name: str
    service_name_zh: str | None = None
    status: str
    status_notes: str | None = None
    agency_responsible: str | None = None
    expected_at: datetime | None = Field(default=None, description="The resolution deadline, set when received")
    response_due: datetime | None = Field(default=None, description="The response deadline, set when received")
    received_at: datetime
    updated_at: datetime | None = None
    location: dict[str, Any]
    description: str
    attributes: dict[str, Any] = {}
    channel: str
    media_url: str | None = None
    preferred_time: datetime | None = None
    duplicate_of: str | None = None
    parent_status: str | None = None
    followers: int = 1
    follower_request_ids: list[str] = []
    reopen_count: int = 0
    rating: dict[str, Any] | None = None
    reporter_id: str | None = None
    contact_on_file: bool = False
    imported_from: ImportedFromRead | None = Field(
        default=None, description="Staff only: the legacy system and case an imported request comes from")
    history: list[HistoryEntry] = []


class RequestPage(BaseModel):
    items: list[RequestRead]
    next_cursor: str | None = None


class ServiceCreate(ServiceSpec):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")


class ServiceRead(ServiceDef):
    pass


class CalendarYearWrite(BaseModel):
    """A year's working calendar as an administrator sets it (the year is in the path)."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = Field(default=CalendarYear.model_fields["timezone"].default, max_length=64)
    working_weekdays: tuple[int, ...] = CalendarYear.model_fields["working_weekdays"].default
    periods: tuple[WorkingPeriod, ...] = Field(default=CalendarYear.model_fields["periods"].default, min_length=1,
                                               max_length=8)
    holidays: tuple[date, ...] = Field(default=(), max_length=366)
    makeup_workdays: tuple[date, ...] = Field(default=(), max_length=366)
    source: str | None = Field(default=None, max_length=500)


class CalendarYearRead(BaseModel):
    """A year's working calendar as this process computes with it; revision 0: the shipped default,
    or (with ``derived``) a year nobody defined, worked on the nearest defined year's week."""

    calendar: CalendarYear
    revision: int
    derived: bool = False
    changed_at: datetime | None = None
    changed_by: str | None = None


class ImportedItem(BaseModel):
    index: int = Field(description="The item's position in the batch")
    external_ref: str
    request_id: str
    status: Literal["imported", "already_imported"] = Field(
        description="already_imported: the same case (same reference and content) was imported before")
    received_at: datetime = Field(description="The original received time the deadlines count from")
    response_due: datetime | None
    resolution_due: datetime | None
    token: str = Field(description="The resident's token of the request (for a tracking link)")


class ImportDone(BaseModel):
    batch_id: str = Field(description="This import; its admin change in audit's trail is requests:<batch_id>")
    system: str
    imported: int
    already_imported: int
    items: list[ImportedItem]


class ImportedFromRead(BaseModel):
    system: str
    reference: str
    batch_id: str
    imported_by: str
    imported_at: datetime
    dispatched_at: datetime | None = None


class ContactRead(BaseModel):
    request_id: str
    contact: dict[str, Any] | None
    erased: bool
    logged_at: datetime


class ErasureDone(BaseModel):
    request_id: str
    contact_erased_at: datetime


def to_read(doc: dict[str, Any], *, parent_status: str | None = None, staff: bool = False) -> RequestRead:
    return RequestRead(
        request_id=doc["_id"], service_code=doc["service_code"], service_name=doc["service_name"],
        service_name_zh=doc.get("service_name_zh"), status=doc["status"], status_notes=doc.get("status_notes"),
        agency_responsible=doc.get("agency_responsible"), expected_at=doc.get("expected_at"),
        response_due=doc.get("response_due"), received_at=doc["received_at"], updated_at=doc.get("updated_at"), location=doc.get("location") or {},
        description=doc.get("description") or "", attributes=doc.get("attributes") or {}, channel=doc["channel"],
        media_url=doc.get("media_url"), preferred_time=doc.get("preferred_time"),
        duplicate_of=doc.get("duplicate_of"), parent_status=parent_status, followers=doc.get("followers", 1),
        follower_request_ids=(doc.get("followers_ids") or []) if staff else [],
        reopen_count=doc.get("reopen_count", 0), rating=doc.get("rating"),
        reporter_id=doc.get("reporter_id") if staff else None, contact_on_file=bool(doc.get("contact_enc")),
        imported_from=doc.get("imported_from") if staff else None,
        history=[HistoryEntry(**{k: h.get(k) for k in ("at", "type", "status", "note")}) for h in doc.get("history", [])],
    )
