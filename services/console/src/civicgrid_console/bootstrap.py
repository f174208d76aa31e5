"""The composition root: settings -> the services' API clients, the sign-in method, the session
codec and the templates, gathered in one ``Console``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from civicgrid_console.adapters.api import Apis, ServiceApi
from civicgrid_console.adapters.session_cookie import SessionCodec
from civicgrid_console.adapters.signin import DevelopmentSignIn, SignInMethod
from civicgrid_console.settings import ConsoleSettings

PACKAGE = Path(__file__).resolve().parent


@dataclass
class Console:
    settings: ConsoleSettings
    apis: Apis
    sign_in: SignInMethod | None
    sessions: SessionCodec
    tz: ZoneInfo

    async def close(self) -> None:
        await self.apis.close()


def bootstrap(settings: ConsoleSettings | None = None) -> Console:
    settings = settings or ConsoleSettings()
    t = settings.api_timeout_seconds
    apis = Apis(intake=ServiceApi("intake", settings.intake_url, t), grid=ServiceApi("grid", settings.grid_url, t),
                matching=ServiceApi("matching", settings.matching_url, t),
                audit=ServiceApi("audit", settings.audit_url, t))
    ttl = int(settings.session_hours * 3600)
    sign_in = (DevelopmentSignIn(apis, secret=settings.auth_secret.get_secret_value(), ttl_seconds=ttl)
               if settings.development else None)  # the OpenID Connect method goes here when configured
    return Console(settings=settings, apis=apis, sign_in=sign_in,
                   sessions=SessionCodec(settings.session_secret.get_secret_value(), max_age_seconds=ttl),
                   tz=ZoneInfo(settings.timezone))
