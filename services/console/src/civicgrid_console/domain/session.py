"""Who is signed in (if anyone), in which language, with which CSRF token and pending messages.

The session travels in an encrypted cookie (adapters/session_cookie.py); this is its plain shape.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

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
    #: one-shot messages for the next page: (kind, text) with kind "ok" or "error"
    flashes: list[list[str]] = field(default_factory=list)
    #: residents' tracking links: request id -> tracking token, so "my reports" works without an account
    tracked: dict[str, str] = field(default_factory=dict)
    #: a volunteer's bookings accepted here (matching lists offers and hours, not bookings)
    bookings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def signed_in(self) -> bool:
        return bool(self.token and self.role)

    def sign_in(self, *, sub: str, role: str, area: str, token: str, label: str) -> None:
        self.sub, self.role, self.area, self.token, self.label = sub, role, area, token, label
        self.csrf = secrets.token_urlsafe(24)  # a new token after sign-in (no fixation)

    def sign_out(self) -> None:
        self.sub = self.role = self.token = None
        self.area = self.label = ""
        self.csrf = secrets.token_urlsafe(24)

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
