"""Signing in, staying signed in and signing out through the platform's OpenID Connect provider.

``begin`` remembers a new attempt in the session and gives the provider's URL to send the browser
to; ``complete`` takes the provider's answer back (state, then code for tokens with the PKCE
verifier, then the ID token's signature and nonce, then the role and area); ``keep_fresh`` renews
the access token shortly before it expires, or signs the person out when it cannot; ``sign_out``
clears the session and says where the browser goes next (the provider's logout, if it has one).
"""

from __future__ import annotations

from typing import Protocol

from civicgrid_console.adapters.oidc import ProviderUnavailable, TokenResponse
from civicgrid_console.domain import signin
from civicgrid_console.domain.session import Session
from civicgrid_console.domain.signin import PendingSignIn, SignInRefused
from civicgrid_runtime.logging import get_logger

log = get_logger("civicgrid.console.signin")


class Provider(Protocol):
    """What the sign-in needs of the provider (adapters/oidc.OidcProvider; a fake in the unit tests)."""

    client_id: str

    async def authorization_url(self, attempt: PendingSignIn) -> str: ...

    async def exchange(self, code: str, attempt: PendingSignIn) -> TokenResponse: ...

    async def refresh(self, refresh_token: str) -> TokenResponse: ...

    async def verify_id_token(self, id_token: str | None) -> dict: ...

    def identity(self, claims: dict) -> tuple[str, str, str]: ...

    async def end_session_url(self, post_logout_redirect_uri: str) -> str | None: ...


async def begin(session: Session, provider: Provider, *, next_path: str, now: float) -> str:
    attempt = PendingSignIn.start(next_path, now)
    url = await provider.authorization_url(attempt)
    session.await_sign_in(attempt, now)
    return url


async def complete(session: Session, provider: Provider, *, state: str, code: str, error: str,
                   now: float) -> PendingSignIn:
    """Sign the person in from the provider's answer; the attempt it answered (for its ``next``)."""
    attempt = session.answer_sign_in(state, now)  # first: an answer this browser did not ask for is refused as such
    if error:
        raise SignInRefused("provider", error)
    if not code:
        raise SignInRefused("code", "the provider's answer carries no code")
    tokens = await provider.exchange(code, attempt)
    claims = await provider.verify_id_token(tokens.id_token)
    signin.check_id_token_claims(claims, nonce=attempt.nonce, client_id=provider.client_id)
    staff_id, role, area = provider.identity(claims)
    session.sign_in(sub=staff_id, role=role, area=area, token=tokens.access_token,
                    label=signin.display_name(claims, staff_id), method="oidc",
                    token_expires_at=signin.access_expires_at(tokens.expires_in, claims, now),
                    refresh_token=tokens.refresh_token)
    log.info("signed in through the identity provider", staff_id=staff_id, role=role, area=area)
    return attempt


async def keep_fresh(session: Session, provider: Provider, *, now: float, margin_seconds: float) -> bool:
    """Renew the access token when it is about to expire. False when the person had to be signed
    out (no refresh token, or the provider refused it); a provider that cannot be reached leaves a
    token that is still valid in place and signs out one that is not."""
    if not session.needs_refresh(now, margin_seconds):
        return True
    if not session.refresh_token:
        session.sign_out()
        return False
    try:
        tokens = await provider.refresh(session.refresh_token)
        claims = await provider.verify_id_token(tokens.id_token) if tokens.id_token else {}
        role, area = _same_person(session, provider, claims)
        expires_at = signin.access_expires_at(tokens.expires_in, claims, now)
    except SignInRefused as exc:
        log.info("refresh refused: signed out", staff_id=session.sub, reason=str(exc))
        session.sign_out()
        return False
    except ProviderUnavailable as exc:
        log.warning("identity provider unreachable for a refresh", staff_id=session.sub, error=str(exc))
        if session.expired(now):
            session.sign_out()
            return False
        return True
    session.renew(token=tokens.access_token, token_expires_at=expires_at, refresh_token=tokens.refresh_token,
                  role=role, area=area)
    return True


def _same_person(session: Session, provider: Provider, claims: dict) -> tuple[str, str]:
    """Role and area after a refresh: from the new ID token when the provider sends one (it must
    still name the same person), else unchanged."""
    if not claims:
        return session.role or "", session.area
    staff_id, role, area = provider.identity(claims)
    if staff_id != session.sub:
        raise SignInRefused("refresh", f"the refreshed ID token names {staff_id!r}, not {session.sub!r}")
    return role, area


async def sign_out(session: Session, provider: Provider | None, *, home_url: str) -> str:
    """Clear the session; where the browser goes next: the provider's logout for an OIDC session
    when it offers one (it returns to ``home_url``), else this site's home page."""
    was_oidc = session.method == "oidc"
    session.sign_out()
    if not (was_oidc and provider):
        return "/"
    try:
        return await provider.end_session_url(home_url) or "/"
    except ProviderUnavailable as exc:
        log.warning("identity provider unreachable at sign-out: signed out here only", error=str(exc))
        return "/"
