"""The composition root: settings -> the services' API clients, the sign-in methods, the session
codec and the templates, gathered in one ``Console``.

Sign-in: the platform's OpenID Connect provider whenever an issuer is configured (outside
development the settings insist on one); the development sign-in (pick a demo person) only with
``CIVICGRID_ENV=development``, beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from civicgrid_console.adapters.api import Apis, ServiceApi
from civicgrid_console.adapters.oidc import OidcProvider
from civicgrid_console.adapters.session_cookie import SessionCodec
from civicgrid_console.adapters.signin import DevelopmentSignIn
from civicgrid_console.settings import ConsoleSettings

PACKAGE = Path(__file__).resolve().parent


@dataclass
class Console:
    settings: ConsoleSettings
    apis: Apis
    dev_sign_in: DevelopmentSignIn | None
    oidc: OidcProvider | None
    sessions: SessionCodec
    tz: ZoneInfo

    async def close(self) -> None:
        await self.apis.close()
        if self.oidc:
            await self.oidc.close()


def bootstrap(settings: ConsoleSettings | None = None) -> Console:
    settings = settings or ConsoleSettings()
    t = settings.api_timeout_seconds
    apis = Apis(intake=ServiceApi("intake", settings.intake_url, t), grid=ServiceApi("grid", settings.grid_url, t),
                matching=ServiceApi("matching", settings.matching_url, t),
                audit=ServiceApi("audit", settings.audit_url, t))
    ttl = int(settings.session_hours * 3600)
    dev_sign_in = (DevelopmentSignIn(apis, secret=settings.auth_secret.get_secret_value(), ttl_seconds=ttl)
                   if settings.development else None)
    oidc = OidcProvider(settings) if settings.oidc_enabled else None
    return Console(settings=settings, apis=apis, dev_sign_in=dev_sign_in, oidc=oidc,
                   sessions=SessionCodec(settings.session_secret.get_secret_value(), max_age_seconds=ttl),
                   tz=ZoneInfo(settings.timezone))
