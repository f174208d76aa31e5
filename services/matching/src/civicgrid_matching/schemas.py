"""HTTP API schemas (create / update / read), separate from the stored documents."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from civicgrid_matching.domain.model import parse_hhmm

Code = str
CODE_PATTERN = r"^[a-z0-9_\-]{1,64}$"
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Window(BaseModel):
    day: Day
    start: str = Field(examples=["08:00"])
    end: str = Field(examples=["12:00"])

    @model_validator(mode="after")
    def _order(self) -> Window:
        if parse_hhmm(self.start) >= parse_hhmm(self.end):
            raise ValueError("start must be before end (split windows that cross midnight)")
        return self


class Unavailable(BaseModel):
    start: datetime
    end: datetime
    reason: str | None = Field(default=None, max_length=200)


class VolunteerBase(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VolunteerCreate(VolunteerBase):
    id: str | None = Field(default=None, pattern=CODE_PATTERN, description="Defaults to a generated id")
    name: str = Field(min_length=1, max_length=100, description="Kept in matching's store only, never in events")
    phone: str | None = Field(default=None, max_length=40)
    community: str = Field(min_length=1, max_length=64,
                           description="Home community: its area code (e.g. 110101001001); staff scoped to an area "
                                       "reach the volunteers whose code starts with theirs")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    skills: list[str] = Field(default_factory=list, description="Catalogue service codes")
    availability: list[Window] = Field(default_factory=list)
    exceptions: list[Unavailable] = Field(default_factory=list, description="Periods of unavailability")
    on_duty: bool = True
    weekly_hours_cap: float = Field(default=8, ge=0, le=80)
    languages: list[str] = Field(default_factory=lambda: ["zh"])
    party_member: bool = False
    work_unit: str | None = Field(default=None, max_length=200, description="Party members' work unit")

    @field_validator("skills")
    @classmethod
    def _codes(cls, v: list[str] | None) -> list[str] | None:
        import re

        if v is None:  # an update that leaves the skills as they are
            return v
        for s in v:
            if not re.match(CODE_PATTERN, s):
                raise ValueError(f"not a service code: {s!r}")
        return sorted(set(v))


class VolunteerUpdate(VolunteerBase):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    phone: str | None = Field(default=None, max_length=40)
    community: str | None = Field(default=None, min_length=1, max_length=64)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    skills: list[str] | None = None
    availability: list[Window] | None = None
    exceptions: list[Unavailable] | None = None
    on_duty: bool | None = None
    weekly_hours_cap: float | None = Field(default=None, ge=0, le=80)
    languages: list[str] | None = None
    party_member: bool | None = None
    work_unit: str | None = Field(default=None, max_length=200)

    _codes = field_validator("skills")(VolunteerCreate._codes.__func__)  # type: ignore[attr-defined]

    @field_validator("name", "community", "lat", "lon")
    @classmethod
    def _kept(cls, v: object) -> object:
        # left out, these stay as they are; null would unplace the volunteer (no area would reach them)
        if v is None:
            raise ValueError("every volunteer has one; leave the field out to keep it")
        return v


class QualificationVerify(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=CODE_PATTERN, examples=["first_aid"])
    expires_on: date | None = Field(default=None, description="None = does not expire")
    evidence: str | None = Field(default=None, max_length=500, description="e.g. certificate number")


class QualificationRead(BaseModel):
    expires_at: datetime | None
    verified_by: str
    verified_at: datetime
    valid: bool


class VolunteerStats(BaseModel):
    completed: int = 0
    no_shows: int = 0
    declines: int = 0
    expiries: int = 0


class VolunteerRead(BaseModel):
    id: str
    name: str
    phone: str | None
    community: str
    lat: float
    lon: float
    skills: list[str]
    qualifications: dict[str, QualificationRead]
    availability: list[Window]
    exceptions: list[Unavailable]
    on_duty: bool
    weekly_hours_cap: float
    languages: list[str]
    party_member: bool
    work_unit: str | None
    stats: VolunteerStats
    rating_count: int
    rating_mean: float | None
    created_at: datetime
    updated_at: datetime


class DeclineBody(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class CompleteBody(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


class CorrectHours(BaseModel):
    hours: float = Field(ge=0, le=24)
    reason: str = Field(min_length=1, max_length=500)


class PreviewRequest(BaseModel):
    service_code: str = Field(pattern=CODE_PATTERN)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    needed_from: datetime
    needed_hours: float = Field(gt=0, le=24)
    recurring_weekly: bool = False
    resident_ref: str | None = None
    limit: int = Field(default=10, ge=1, le=100)


class RosterRow(VolunteerCreate):
    """One line of a roster file: a registration and the qualification codes verified with it."""

    qualifications: list[str] = Field(default_factory=list)
