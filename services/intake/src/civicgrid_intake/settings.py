"""Intake's settings: env prefix ``INTAKE_`` (plus the platform-wide unprefixed Kafka/Mongo pair)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from civicgrid_runtime.ratelimit import Limit
from civicgrid_runtime.settings import ServiceSettings

DEV_CONTACT_KEY = "civicgrid-dev-contact-key-change-me"
DEV_REPORTER_KEY = "civicgrid-dev-reporter-key-change-me"
DEV_TOKEN_KEY = "civicgrid-dev-token-key-change-me"


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore", frozen=True)

    service_name: str = "intake"
    http_port: int = Field(default=8101, ge=1, le=65535)
    contact_key: SecretStr = Field(default=SecretStr(DEV_CONTACT_KEY),
                                   description="Key encrypting residents' contact details at rest (AES-GCM)")
    reporter_key: SecretStr = Field(default=SecretStr(DEV_REPORTER_KEY),
                                    description="HMAC key of the pseudonymous reporter id")
    token_key: SecretStr = Field(default=SecretStr(DEV_TOKEN_KEY),
                                 description="HMAC key of the residents' request tokens")
    duplicate_distance_m: float = Field(default=50.0, ge=0, le=5000)
    duplicate_window_hours: float = Field(default=72.0, ge=0, le=24 * 90)
    duplicate_catch_up_seconds: float = Field(
        default=60.0, ge=0, le=3600,
        description="At start, how long to wait for the duplicate index to read the window from intake's topic "
                    "before serving anyway (a duplicate of a request not read yet is taken for a new one)")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    import_window_days: float = Field(
        default=30.0, gt=0, le=366, description="How far back an imported case's received_at may lie (the import "
                                                "of open cases from the system the city replaces)")
    # -- abuse limits on the public endpoints, per client (IP address; Open311: api_key), shared by
    #    every replica; unset = the production default, or no limit in development mode
    rate_limit_window_seconds: float = Field(default=60.0, gt=0, le=86400, description="Length of one window")
    rate_limit_submissions: int | None = Field(
        default=None, ge=0, description="Submissions (native and Open311 POST) per client per window "
                                         "(default 10; 0 = no limit)")
    rate_limit_reads: int | None = Field(
        default=None, ge=0, description="Public status reads (a request by its token, Open311 GETs) per client per "
                                        "window (default 120; 0 = no limit)")
    load_default_catalogue: bool = True
    jurisdiction_id: str = "civicgrid.local"
    public_base_url: str = ""

    def _limit(self, name: str, configured: int | None, production_default: int) -> Limit:
        if configured is None:
            configured = 0 if self.development else production_default
        return Limit(name, configured)

    @property
    def submission_limit(self) -> Limit:
        return self._limit("submit", self.rate_limit_submissions, 10)

    @property
    def read_limit(self) -> Limit:
        return self._limit("read", self.rate_limit_reads, 120)
