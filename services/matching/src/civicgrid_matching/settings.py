"""Settings of the matching service (env prefix ``MATCHING_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from civicgrid_runtime.settings import ServiceSettings


class MatchingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MATCHING_", extra="ignore", frozen=True)

    service_name: str = "matching"
    http_port: int = Field(default=8103, ge=1, le=65535)
    offers_at_once: int = Field(default=3, ge=1, le=50, description="K: best candidates offered at once")
    offer_ttl_seconds: float = Field(default=1800, gt=0, description="An open offer expires after this")
    distance_limit_m: float = Field(default=3000, gt=0, description="Volunteers farther away are not eligible")
    expiry_scan_seconds: float = Field(default=1.0, gt=0)
    index_refresh_seconds: float = Field(default=5.0, gt=0, description="Reload volunteers changed elsewhere")
    timezone: str = Field(default="Asia/Shanghai", description="Time zone of availability windows")
