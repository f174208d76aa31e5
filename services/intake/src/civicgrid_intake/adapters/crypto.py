"""Residents' contact details: encrypted at rest (AES-256-GCM) and pseudonymised (HMAC-SHA256).

The contact key never leaves this process; the reporter id is a keyed hash of the normalised phone
number (or e-mail when there is no phone), so a repeated reporter is recognised without anyone
outside intake learning who they are. Resident tokens are keyed hashes of the request id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = b"v1"


def _key(material: str) -> bytes:
    """32 bytes from a configured key: a urlsafe-base64 32-byte key as is, else SHA-256 of the text."""
    try:
        raw = base64.urlsafe_b64decode(material + "=" * (-len(material) % 4))
        if len(raw) == 32:
            return raw
    except (ValueError, TypeError):
        pass
    return hashlib.sha256(material.encode()).digest()


def normalise_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits


class ContactVault:
    def __init__(self, contact_key: str, reporter_key: str, token_key: str) -> None:
        self._aead = AESGCM(_key(contact_key))
        self._reporter_key = _key(reporter_key)
        self._token_key = _key(token_key)

    # -- encryption at rest

    def encrypt(self, contact: dict[str, Any], *, request_id: str) -> str:
        nonce = os.urandom(12)
        blob = self._aead.encrypt(nonce, json.dumps(contact, ensure_ascii=False).encode(), request_id.encode())
        return (VERSION + b"." + base64.urlsafe_b64encode(nonce + blob)).decode()

    def decrypt(self, token: str, *, request_id: str) -> dict[str, Any]:
        version, _, body = token.encode().partition(b".")
        if version != VERSION:
            raise ValueError("unknown contact encryption version")
        raw = base64.urlsafe_b64decode(body)
        return json.loads(self._aead.decrypt(raw[:12], raw[12:], request_id.encode()))

    # -- pseudonyms and tokens

    def reporter_id(self, *, phone: str | None, email: str | None) -> str | None:
        if phone and normalise_phone(phone):
            basis = "tel:" + normalise_phone(phone)
        elif email and email.strip():
            basis = "mailto:" + email.strip().lower()
        else:
            return None
        return "rp_" + hmac.new(self._reporter_key, basis.encode(), hashlib.sha256).hexdigest()[:32]

    def request_token(self, request_id: str) -> str:
        mac = hmac.new(self._token_key, request_id.encode(), hashlib.sha256).digest()
        return f"{request_id}.{base64.urlsafe_b64encode(mac[:18]).decode()}"

    def check_token(self, request_id: str, token: str | None) -> bool:
        # compared as bytes: compare_digest refuses str with non-ASCII characters (a guessed token may have them)
        return bool(token) and hmac.compare_digest(self.request_token(request_id).encode(),
                                                   token.encode(errors="replace"))

    @staticmethod
    def token_hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()
