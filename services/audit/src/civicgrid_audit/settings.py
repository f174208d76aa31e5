"""Audit settings (env prefix ``AUDIT_``; Kafka/Mongo addresses also read unprefixed)."""

from __future__ import annotations

import hashlib

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from civicgrid_runtime.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIT_", extra="ignore", frozen=True)

    service_name: str = "audit"
    http_port: int = Field(default=8104, ge=1, le=65535)

    # -- consumer: audit records the pipeline, it is no step of it. Batches of a couple of seconds (and
    # of every topic at once; up to 10,000 events when it catches up) fold a request's received,
    # assigned, offered ... into one write of its document, for a trail that much behind
    consumer_max_batch: int = Field(default=10000, ge=1, le=10000)
    consumer_fetch_max_wait_ms: int = Field(
        default=2000, ge=0, le=10000, description="Longest a fetch waits on the broker while events flow")
    consumer_fetch_min_bytes: int = Field(
        default=1_048_576, ge=1, le=1_048_576, description="Bytes a fetch waits for while events flow")

    # -- escalation
    scan_seconds: float = Field(default=0.5, gt=0, le=60, description="Deadline scanner period")
    lease_seconds: float = Field(default=30.0, gt=0, le=3600, description="Claim lease of a due deadline")
    repeat_hours: float | None = Field(default=None, gt=0,
                                       description="Period between repeated escalations; default: the limit itself")

    # -- KPIs
    kpi_flush_seconds: float = Field(
        default=30.0, gt=0, le=3600,
        description="How often the requests' KPI deltas are added to the counters (the KPIs lag by at most this "
                    "much): a counter every request of a grid, staff member or day shares is written once per "
                    "flush, not once per batch")

    # -- tamper-evident log
    signing_key: SecretStr = Field(
        default=SecretStr(hashlib.sha256(b"civicgrid-audit-development-key").hexdigest()),
        description="Ed25519 private key seed, 32 bytes hex",
    )
    checkpoint_seconds: float = Field(default=30.0, gt=0, le=86400, description="Signed checkpoint period")
    head_flush_seconds: float = Field(
        default=30.0, gt=0, le=600, description="How often the log heads kept in memory are written back (the records "
                                              "are written with every batch; a head only saves folding them)")
