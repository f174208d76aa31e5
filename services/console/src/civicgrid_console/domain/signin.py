"""The rules of signing in at the platform's OpenID Connect provider, apart from HTTP and signatures.

Authorization code flow with PKCE (RFC 7636, S256), ``state`` and ``nonce`` (OpenID Connect Core
3.1): a sign-in started here is remembered in the person's sealed session as a ``PendingSignIn``;
the provider's answer is accepted only with the ``state`` of one still pending (single use, a few
minutes), the code is traded with that attempt's PKCE verifier, and the ID token must carry that
attempt's ``nonce`` and be meant for this client. The signature, issuer, audience and times of the
ID token are checked by the adapter (adapters/oidc.py) with the provider's published keys.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import asdict, dataclass
from typing import Any

#: how long a sign-in started here may take at the provider (typing a password, not a coffee break)
PENDING_SECONDS = 600
#: sign-ins started in other tabs of the same browser that may still come back
MAX_PENDING = 3


class SignInRefused(Exception):
    """The provider's answer is not accepted; ``reason`` names the check (an i18n key suffix)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class PendingSignIn:
    state: str
    nonce: str
    verifier: str
    next: str
    started_at: float

    @classmethod
    def start(cls, next_path: str, now: float) -> PendingSignIn:
        """Fresh, unguessable values for one attempt (the verifier: 64 characters of the URL-safe
        alphabet, within RFC 7636's 43..128)."""
        return cls(state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
                   verifier=secrets.token_urlsafe(48), next=next_path, started_at=now)

    @property
    def challenge(self) -> str:
        """The S256 code challenge: BASE64URL(SHA256(verifier)) without padding (RFC 7636, 4.2)."""
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def expired(self, now: float) -> bool:
        return now - self.started_at > PENDING_SECONDS

    def dump(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, data: dict[str, Any]) -> PendingSignIn:
        return cls(state=str(data["state"]), nonce=str(data["nonce"]), verifier=str(data["verifier"]),
                   next=str(data.get("next", "")), started_at=float(data["started_at"]))


def remember(pending: list[dict[str, Any]], attempt: PendingSignIn, now: float) -> list[dict[str, Any]]:
    """The attempts to keep after starting ``attempt``: the unexpired ones, newest last, at most MAX_PENDING."""
    kept = [p for p in pending if not PendingSignIn.load(p).expired(now)]
    return [*kept, attempt.dump()][-MAX_PENDING:]


def take(pending: list[dict[str, Any]], state: str, now: float) -> tuple[PendingSignIn, list[dict[str, Any]]]:
    """The attempt ``state`` answers, and the attempts left (it is used up either way). An unknown,
    altered, replayed or expired state is refused: the answer was not asked for by this browser."""
    found, left = None, []
    for p in pending:
        attempt = PendingSignIn.load(p)
        if state and secrets.compare_digest(attempt.state.encode(), state.encode()):
            found = attempt
        elif not attempt.expired(now):
            left.append(p)
    if found is None:
        raise SignInRefused("state")
    if found.expired(now):
        raise SignInRefused("expired")
    return found, left


def check_id_token_claims(claims: dict[str, Any], *, nonce: str, client_id: str) -> None:
    """What OpenID Connect Core 3.1.3.7 leaves to the client once the signature, issuer, audience and
    times are checked: the nonce of this attempt (a token without one is refused: we always send
    one), and the authorized party when the token is addressed to more than this client."""
    got = claims.get("nonce")
    if not isinstance(got, str) or not got:
        raise SignInRefused("nonce", "the ID token carries no nonce")
    if not secrets.compare_digest(got.encode(), nonce.encode()):
        raise SignInRefused("nonce", "the ID token's nonce is not the one this sign-in sent")
    audiences = claims.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
    if client_id not in audiences:
        raise SignInRefused("audience", f"the ID token is not addressed to {client_id!r}")
    azp = claims.get("azp")
    if len(audiences) > 1 and azp != client_id:
        raise SignInRefused("audience", f"the ID token was issued to {azp!r}, not to {client_id!r}")


def access_expires_at(expires_in: Any, id_claims: dict[str, Any], now: float) -> float:
    """When the access token runs out: the token response's ``expires_in``, or else the ID token's
    ``exp`` (issued together, and the provider says nothing more)."""
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        return now + float(expires_in)
    exp = id_claims.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp)
    raise SignInRefused("expiry", "neither expires_in nor the ID token say when the access token expires")


def display_name(claims: dict[str, Any], staff_id: str) -> str:
    name = claims.get("name")
    return f"{name} ({staff_id})" if isinstance(name, str) and name and name != staff_id else staff_id
