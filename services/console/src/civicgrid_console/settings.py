"""Settings of the console (env prefix ``CONSOLE_``).

The console has no store and no broker of its own: it calls the four services' HTTP APIs with the
signed-in person's bearer token. ``CIVICGRID_ENV`` (platform-wide, read as every service reads it)
decides whether the development sign-in exists and whether built-in secrets are accepted.

Staff sign in at the platform's OpenID Connect provider: its issuer is the platform-wide
``CIVICGRID_OIDC_ISSUER`` (the services must accept the tokens the console obtains, so the two can
never differ), and the role and area are read from its tokens by the same ``CIVICGRID_OIDC_*``
claim settings as the services read them. What belongs to the console alone -- its client id,
optional secret, scopes and public URL -- carries its own prefix (docs/adr/0302).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from civicgrid_runtime.settings import ServiceSettings

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # services/console
DEVELOPMENT_SESSION_SECRET = "civicgrid-console-development-session-secret"
LOOPBACK = ("http://127.0.0.1:", "http://localhost:", "http://[::1]:")


class ConsoleSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore", frozen=True)

    service_name: str = "console"
    http_port: int = Field(default=8100, ge=1, le=65535)
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
    public_url: str = Field(
        default="", description="Where browsers reach the console (scheme, host, port; no path): the sign-in "
                                "callback <public_url>/auth/callback is registered with the identity provider. "
                                "Empty: http://127.0.0.1:<http_port> (development only)")
    oidc_client_id: str = Field(default="civicgrid-console",
                                description="The console's client id at the identity provider")
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="Its secret, if the provider registered it as a confidential client (PKCE "
                                  "either way); unset: a public client")
    oidc_scopes: str = Field(
        default="openid profile groups offline_access",
        description="Scopes asked for, space-separated: openid, the claims that carry the staff id and groups, "
                    "offline_access for a refresh token, and whatever makes the provider address the access "
                    "token to the APIs (Dex: audience:server:client_id:civicgrid)")
    token_refresh_margin_seconds: int = Field(
        default=60, ge=0, le=3600, description="Refresh the access token this long before it expires")
    live_refresh_seconds: int = Field(
        default=15, ge=0, le=3600,
        description="How often an open page asks for its live region again (the queue, the late lists, the KPIs, "
                    "dispatches, offers, a tracked request): one page's API calls per open page per interval "
                    "(docs/adr/0303). 0: pages are refreshed only when reloaded")

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://127.0.0.1:{self.http_port}").rstrip("/")

    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}/auth/callback"

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc.issuer)

    @property
    def scope_list(self) -> tuple[str, ...]:
        return tuple(self.oidc_scopes.split())

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        if v and not (v.startswith("https://") or v.startswith(LOOPBACK)):
            raise ValueError(f"the console's public URL must be https:// (plain http only on loopback), got {v!r}")
        if v and "/" in v.removeprefix("https://").removeprefix("http://").rstrip("/"):
            raise ValueError(f"the console's public URL has no path (the console serves from /), got {v!r}")
        return v

    @field_validator("oidc_scopes")
    @classmethod
    def _scopes(cls, v: str) -> str:
        if "openid" not in v.split():
            raise ValueError(f"the scopes must include openid (an ID token is what says who signed in), got {v!r}")
        return v

    @model_validator(mode="after")
    def _staff_sign_in_outside_development(self) -> ConsoleSettings:
        """Outside development the provider is the only sign-in, so the console must know it and
        where the provider sends people back."""
        if not self.development:
            missing = [name for name, given in (("CIVICGRID_OIDC_ISSUER", self.oidc.issuer),
                                                ("CONSOLE_PUBLIC_URL", self.public_url)) if not given]
            if missing:
                raise ValueError(f"outside development mode staff sign in only through the identity provider: "
                                 f"set {', '.join(missing)}")
        return self
