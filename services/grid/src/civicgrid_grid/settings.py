"""Settings of the grid service (env prefix ``GRID_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from civicgrid_runtime.settings import ServiceSettings


class GridSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GRID_", extra="ignore", frozen=True)

    service_name: str = "grid"
    http_port: int = Field(default=8102, ge=1, le=65535)
    # assignment writes one load update per person per batch, whatever the batch's size: a backlog
    # handled in larger batches costs the store far less per request (at a steady rate they stay small)
    consumer_max_batch: int = Field(default=2000, ge=1, le=10000)
    map_refresh_seconds: float = Field(default=5.0, gt=0, description="How often to look for a new map version")
    default_load_limit: int = Field(default=20, ge=1)
    default_report_back_hours: float = Field(default=72.0, gt=0)
    timezone: str = Field(default="Asia/Shanghai", description="The district's time zone: leave dates are its days")
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024,
                                description="Largest request body: a whole map's GeoJSON comes in one import")
    demo_size: Literal["street", "district", "city", "megacity"] = "district"
    demo_seed: int = 7
