"""Who is signed in (if anyone), in which language, with which CSRF token and pending messages.

The session travels in an encrypted cookie (adapters/session_cookie.py); this is its plain shape.
A person signed in through the identity provider also carries when their access token expires and
the refresh token that renews it; a sign-in under way at the provider is one of ``pending``
(domain/signin.py).
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from civicgrid_console.domain import signin

LANGUAGES = ("zh", "en")


@dataclass
class Session:
    lang: str = "zh"
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    sub: str | None = None
    role: str | None = None
    area: str = ""
    label: str = ""
    token: str | None = None
    #: how the person signed in: "oidc" (the identity provider) or "development" (a demo person)
    method: str | None = None
    #: when the access token expires (epoch seconds; OIDC), and the refresh token that renews it
    token_expires_at: float | None = None
    refresh_token: str | None = None
    #: sign-ins started at the identity provider and not yet answered (PendingSignIn.dump())
    pending: list[dict[str, Any]] = field(default_factory=list)
    #: one-shot messages for the next page: (kind, text) with kind "ok" or "error"
    flashes: list[list[str]] = field(default_factory=list)
    #: residents' tracking links: request id -> tracking token, so "my reports" works without an account
    tracked: dict[str, str] = field(default_factory=dict)
    #: a volunteer's bookings accepted here (matching lists offers and hours, not bookings)
    bookings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def signed_in(self) -> bool:
        return bool(self.token and self.role)

    def sign_in(self, *, sub: str, role: str, area: str, token: str, label: str,
                method: Literal["oidc", "development"] = "development", token_expires_at: float | None = None,
                refresh_token: str | None = None) -> None:
        self.sub, self.role, self.area, self.token, self.label = sub, role, area, token, label
        self.method, self.token_expires_at, self.refresh_token = method, token_expires_at, refresh_token
        self.csrf = secrets.token_urlsafe(24)  # a new token after sign-in (no fixation)

    def sign_out(self) -> None:
        self.sub = self.role = self.token = self.method = self.token_expires_at = self.refresh_token = None
        self.area = self.label = ""
        self.pending = []
        self.csrf = secrets.token_urlsafe(24)

    def renew(self, *, token: str, token_expires_at: float, refresh_token: str | None, role: str, area: str) -> None:
        """A refreshed access token (the provider may have changed the person's role or area meanwhile)."""
        self.token, self.token_expires_at, self.role, self.area = token, token_expires_at, role, area
        if refresh_token:  # providers that rotate refresh tokens send a new one; others keep the first
            self.refresh_token = refresh_token

    def needs_refresh(self, now: float, margin_seconds: float) -> bool:
        return (self.method == "oidc" and self.signed_in and self.token_expires_at is not None
                and self.token_expires_at - margin_seconds <= now)

    def expired(self, now: float) -> bool:
        return self.token_expires_at is not None and self.token_expires_at <= now

    def await_sign_in(self, attempt: signin.PendingSignIn, now: float) -> None:
        self.pending = signin.remember(self.pending, attempt, now)

    def answer_sign_in(self, state: str, now: float) -> signin.PendingSignIn:
        """The sign-in ``state`` answers, used up; SignInRefused when this browser did not start it."""
        attempt, self.pending = signin.take(self.pending, state, now)
        return attempt

    def flash(self, kind: str, text: str) -> None:
        self.flashes.append([kind, text])

    def take_flashes(self) -> list[list[str]]:
        out, self.flashes = self.flashes, []
        return out

    def track(self, request_id: str, token: str) -> None:
        self.tracked[request_id] = token
        while len(self.tracked) > 20:  # the cookie stays small
            self.tracked.pop(next(iter(self.tracked)))

    def dump(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, data: dict[str, Any] | None, *, default_lang: str) -> Session:
        if not data:
            return cls(lang=default_lang)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        s = cls(**known)
        if s.lang not in LANGUAGES:
            s.lang = default_lang
        return s
