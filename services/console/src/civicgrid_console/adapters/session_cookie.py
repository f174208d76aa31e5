"""The session cookie: the session's JSON sealed with AES-GCM (the bearer token inside must be
neither readable nor changeable by the browser), with its expiry inside the sealed part."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

COOKIE_NAME = "cg_session"


class SessionCodec:
    def __init__(self, secret: str, *, max_age_seconds: int) -> None:
        self._aead = AESGCM(hashlib.sha256(secret.encode()).digest())
        self.max_age_seconds = max_age_seconds

    def seal(self, data: dict[str, Any]) -> str:
        nonce = os.urandom(12)
        body = json.dumps({"exp": int(time.time()) + self.max_age_seconds, "data": data},
                          separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, body, COOKIE_NAME.encode())).decode()

    def open(self, value: str | None) -> dict[str, Any] | None:
        """The session, or None when absent, tampered with, sealed with another key or expired."""
        if not value:
            return None
        try:
            raw = base64.urlsafe_b64decode(value.encode())
            body = json.loads(self._aead.decrypt(raw[:12], raw[12:], COOKIE_NAME.encode()))
        except (ValueError, InvalidTag):
            return None
        if body.get("exp", 0) < time.time():
            return None
        return body.get("data")
