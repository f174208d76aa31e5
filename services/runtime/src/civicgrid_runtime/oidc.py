"""Staff access tokens from the city's OpenID Connect provider (docs/adr/0500-oidc-staff-sign-in.md).

The issuer's discovery document (``/.well-known/openid-configuration``) names its JWKS; PyJWT's
``PyJWKClient`` fetches and caches the key set (refetched after ``jwks_cache_seconds``, and at once
for an unknown ``kid`` -- a rotated key -- at most every ``jwks_min_refetch_seconds``, so a flood of
made-up key ids cannot turn into a flood of requests to the provider). Only RS256/ES256 are
accepted; ``iss``, ``aud``, ``exp`` and ``nbf`` are checked with a bounded clock skew. Role and area
come from claims or from the provider's groups (``OidcSettings``).

Verification runs in FastAPI's thread pool (the auth dependencies are plain functions), so the
blocking fetches never stall the event loop.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

import jwt

from civicgrid_runtime.settings import OidcSettings

#: roles a provider may grant: residents never sign in with the city's staff provider
STAFF_ROLES = ("operator", "grid_worker", "supervisor", "department", "volunteer", "auditor", "admin")
#: roles whose work is bounded by an area: a token for one of them must say which
AREA_BOUND_ROLES = ("grid_worker", "supervisor")


class ProviderUnavailable(Exception):
    """The identity provider could not be asked for its configuration or keys."""


class InvalidStaffToken(Exception):
    """The token is not one this platform accepts; the message says why."""


class OidcVerifier:
    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._jwks: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def jwks(self) -> jwt.PyJWKClient:
        """The key set client, from the discovery document on first use (the provider may start later)."""
        with self._lock:
            if self._jwks is None:
                doc = self.discover()
                s = self.settings
                self._jwks = jwt.PyJWKClient(doc["jwks_uri"], cache_jwk_set=True, lifespan=s.jwks_cache_seconds,
                                             timeout=s.http_timeout_seconds,
                                             cooldown_duration=s.jwks_min_refetch_seconds)
            return self._jwks

    def discover(self) -> dict[str, Any]:
        issuer = self.settings.issuer.rstrip("/")
        url = f"{issuer}/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(url, timeout=self.settings.http_timeout_seconds) as r:  # noqa: S310 - https or loopback (settings)
                doc = json.load(r)
        except (OSError, ValueError) as exc:
            raise ProviderUnavailable(f"discovery at {url} failed: {exc}") from exc
        # the document must be the configured issuer's own (OpenID Connect Discovery 1.0, 4.3)
        if doc.get("issuer", "").rstrip("/") != issuer or not doc.get("jwks_uri"):
            raise ProviderUnavailable(f"discovery at {url} names issuer {doc.get('issuer')!r}, expected {issuer!r}")
        return doc

    def verify(self, token: str) -> tuple[str, str, str]:
        """(subject, role, area) of a valid access token; raises InvalidStaffToken or ProviderUnavailable."""
        s = self.settings
        try:
            key = self.jwks().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise ProviderUnavailable(str(exc)) from exc
        except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
            raise InvalidStaffToken(f"no key of the issuer signed it: {exc}") from None
        try:
            claims = jwt.decode(token, key, algorithms=list(s.algorithm_list), audience=list(s.audience_list),
                                issuer=s.issuer, leeway=s.leeway_seconds,
                                options={"require": ["iss", "aud", "exp", "iat"], "verify_nbf": True})
        except jwt.ExpiredSignatureError:
            raise InvalidStaffToken("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidStaffToken(str(exc)) from None
        return self.identity(claims)

    def identity(self, claims: dict[str, Any]) -> tuple[str, str, str]:
        """Subject, role and area from the claims (a direct claim wins over the groups)."""
        s = self.settings
        subject = claims.get(s.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise InvalidStaffToken(f"the token has no {s.subject_claim!r} claim")
        groups = claims.get(s.groups_claim) or []
        if not isinstance(groups, list):
            raise InvalidStaffToken(f"claim {s.groups_claim!r} is not a list")
        role = self._one(claims.get(s.role_claim), groups, s.role_group_prefix, "role")
        if role not in STAFF_ROLES:
            raise InvalidStaffToken(f"role {role!r} is not a staff role ({', '.join(STAFF_ROLES)})")
        area = self._one(claims.get(s.area_claim), groups, s.area_group_prefix, "area")
        if area is None:
            if role in AREA_BOUND_ROLES:
                raise InvalidStaffToken(f"a {role} token must name an area ({s.area_claim!r} claim or "
                                        f"a {s.area_group_prefix!r} group)")
            area = ""
        return subject, role, area

    @staticmethod
    def _one(direct: Any, groups: list[Any], prefix: str, what: str) -> str | None:
        if direct is not None:
            if not isinstance(direct, str):
                raise InvalidStaffToken(f"the {what} claim is not a string")
            return direct
        found = {g.removeprefix(prefix) for g in groups if isinstance(g, str) and prefix and g.startswith(prefix)}
        if len(found) > 1:  # two roles or areas: which one applies is the provider's to decide, not ours
            raise InvalidStaffToken(f"the token's groups name more than one {what}: {sorted(found)}")
        return found.pop() if found else None


def wait_for_provider(settings: OidcSettings, timeout: float = 30.0) -> None:
    """Block until the provider answers discovery (used by tools that start it)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            OidcVerifier(settings).discover()
            return
        except ProviderUnavailable as exc:
            last = exc
            time.sleep(0.3)
    raise ProviderUnavailable(f"no answer from {settings.issuer} in {timeout:.0f}s: {last}")
