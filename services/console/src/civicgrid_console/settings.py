"""Settings of the console (env prefix ``CONSOLE_``).

The console has no store and no broker of its own: it calls the four services' HTTP APIs with the
signed-in person's bearer token. ``CIVICGRID_ENV`` (unprefixed, like the auth secret) decides
whether the development sign-in exists and whether built-in secrets are accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from civicgrid_runtime.settings import ServiceSettings

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # services/console
DEVELOPMENT_SESSION_SECRET = "civicgrid-console-development-session-secret"
DEVELOPMENT_AUTH_SECRET = "civicgrid-development-secret-change-me"


class ConsoleSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore", frozen=True)

    service_name: str = "console"
    http_port: int = Field(default=8100, ge=1, le=65535)
    environment: Literal["development", "production"] = Field(
        default="development", validation_alias=AliasChoices("environment", "CIVICGRID_ENV"))
    intake_url: str = Field(default="http://127.0.0.1:8101",
                            validation_alias=AliasChoices("intake_url", "CONSOLE_INTAKE_URL", "CIVICGRID_INTAKE_URL"))
    grid_url: str = Field(default="http://127.0.0.1:8102",
                          validation_alias=AliasChoices("grid_url", "CONSOLE_GRID_URL", "CIVICGRID_GRID_URL"))
    matching_url: str = Field(default="http://127.0.0.1:8103", validation_alias=AliasChoices(
        "matching_url", "CONSOLE_MATCHING_URL", "CIVICGRID_MATCHING_URL"))
    audit_url: str = Field(default="http://127.0.0.1:8104",
                           validation_alias=AliasChoices("audit_url", "CONSOLE_AUDIT_URL", "CIVICGRID_AUDIT_URL"))
    api_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    session_secret: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_SESSION_SECRET),
        description="Key the session cookie is encrypted with (AES-GCM; any length, stretched with SHA-256)")
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    secure_cookies: bool = Field(default=False, description="Mark cookies Secure (set behind TLS)")
    timezone: str = Field(default="Asia/Shanghai", description="The office's time zone: every date shown is in it")
    default_language: Literal["zh", "en"] = "zh"
    tile_url: str = Field(default="", description="Optional map tile URL template ({z}/{x}/{y}); none: the grid "
                                                  "map alone, drawn from grid's GeoJSON")
    assets_dir: Path = Field(default=PACKAGE_ROOT / "node_modules",
                             description="Where `npm ci` put the front-end packages (htmx, Leaflet, ECharts)")

    @property
    def development(self) -> bool:
        return self.environment == "development"

    @model_validator(mode="after")
    def _no_built_in_secrets_outside_development(self) -> ConsoleSettings:
        if not self.development:
            if self.session_secret.get_secret_value() == DEVELOPMENT_SESSION_SECRET:
                raise ValueError("CONSOLE_SESSION_SECRET must be set outside development")
            if self.auth_secret.get_secret_value() == DEVELOPMENT_AUTH_SECRET:
                raise ValueError("CIVICGRID_AUTH_SECRET must be set outside development")
        return self
