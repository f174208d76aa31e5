"""Commands intake accepts, independent of the API they arrive through (native JSON or Open311)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from civicgrid_contracts.values import Channel, Rating
from civicgrid_intake.domain.errors import InvalidRequest

MAX_DESCRIPTION = 4000


class LocationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: float | None = Field(default=None, ge=-90, le=90, description="WGS 84 latitude")
    lon: float | None = Field(default=None, ge=-180, le=180, description="WGS 84 longitude")
    building_id: str | None = Field(default=None, min_length=1, max_length=64)
    address_text: str | None = Field(default=None, min_length=1, max_length=500)

    @model_validator(mode="after")
    def _one_of(self) -> LocationIn:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together")
        if self.lat is None and not self.building_id and not self.address_text:
            raise ValueError("give coordinates (lat and lon), a building_id or an address_text")
        return self


class ContactIn(BaseModel):
    """The reporter's contact details: stored encrypted in intake only, never published."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=32, pattern=r"^[0-9+\-() ]{3,32}$")
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service_code: str = Field(min_length=1, max_length=64)
    location: LocationIn
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    attributes: dict[str, Any] = Field(default_factory=dict)
    channel: Channel = "web"
    media_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://")
    contact: ContactIn | None = None
    preferred_time: datetime | None = None
    device_id: str | None = Field(default=None, max_length=100)
    account_id: str | None = Field(default=None, max_length=100)

    def fingerprint(self) -> str:
        """Stable hash of the submission (for Idempotency-Key comparison)."""
        body = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()


class RateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: Rating
    comment: str | None = Field(default=None, max_length=1000)


class UnmergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


def check_location(loc: LocationIn | None) -> None:
    if loc is None:
        raise InvalidRequest("a location is required", field="location")


ListOrder = Literal["newest", "oldest"]
