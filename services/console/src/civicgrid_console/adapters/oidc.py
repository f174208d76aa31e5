"""The platform's OpenID Connect provider, as the console talks to it: the authorization URL the
browser is sent to, the token endpoint (code for tokens, refresh), and the ID token's signature.

Discovery and the provider's key set are the runtime's (``civicgrid_runtime.oidc.OidcVerifier``:
PyJWT's ``PyJWKClient``, cached, refetched for a rotated key id), so the console and the services
trust the same keys the same way; their blocking fetches run in the thread pool. The staff id,
role and area come from the ID token by the services' own mapping (``OidcVerifier.identity``).
The rules of state, nonce and PKCE are the domain's (domain/signin.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import jwt
from starlette.concurrency import run_in_threadpool

from civicgrid_console.domain.signin import PendingSignIn, SignInRefused
from civicgrid_console.settings import ConsoleSettings
from civicgrid_runtime.oidc import InvalidStaffToken, OidcVerifier, ProviderUnavailable

__all__ = ["OidcProvider", "ProviderUnavailable", "TokenResponse"]


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    id_token: str | None
    refresh_token: str | None
    expires_in: Any


class OidcProvider:
    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.client_id = settings.oidc_client_id
        self.redirect_uri = settings.redirect_uri
        self._verifier = OidcVerifier(settings.oidc)
        self._discovery: dict[str, Any] | None = None
        secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else ""
        # client_secret_basic (the default of OpenID Connect): id and secret form-encoded, then Basic
        self._auth = httpx.BasicAuth(quote(self.client_id, safe=""), quote(secret, safe="")) if secret else None
        self._http = httpx.AsyncClient(timeout=settings.oidc.http_timeout_seconds)

    async def close(self) -> None:
        await self._http.aclose()

    async def discovery(self) -> dict[str, Any]:
        """The provider's discovery document (kept once read: its endpoints do not move while we run)."""
        if self._discovery is None:
            doc = await run_in_threadpool(self._verifier.discover)
            for key in ("authorization_endpoint", "token_endpoint"):
                if not doc.get(key):
                    raise ProviderUnavailable(f"the provider's discovery document has no {key}")
            self._discovery = doc
        return self._discovery

    async def authorization_url(self, attempt: PendingSignIn) -> str:
        doc = await self.discovery()
        query = {"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
                 "scope": " ".join(self.settings.scope_list), "state": attempt.state, "nonce": attempt.nonce,
                 "code_challenge": attempt.challenge, "code_challenge_method": "S256"}
        endpoint = doc["authorization_endpoint"]
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"

    async def exchange(self, code: str, attempt: PendingSignIn) -> TokenResponse:
        """The code for tokens, proving with the attempt's PKCE verifier that we asked for it."""
        return await self._token({"grant_type": "authorization_code", "code": code,
                                  "redirect_uri": self.redirect_uri, "code_verifier": attempt.verifier}, "code")

    async def refresh(self, refresh_token: str) -> TokenResponse:
        return await self._token({"grant_type": "refresh_token", "refresh_token": refresh_token}, "refresh")

    async def _token(self, form: dict[str, str], refused_as: str) -> TokenResponse:
        doc = await self.discovery()
        if self._auth is None:
            form = {**form, "client_id": self.client_id}  # a public client names itself in the form
        try:
            r = await self._http.post(doc["token_endpoint"], data=form, auth=self._auth,
                                      headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"token endpoint: {exc!r}") from exc
        if r.status_code >= 500:
            raise ProviderUnavailable(f"token endpoint answered {r.status_code}")
        body = _json_object(r)
        if r.status_code != 200 or not isinstance(body.get("access_token"), str):
            error = body.get("error_description") or body.get("error") or f"HTTP {r.status_code}"
            raise SignInRefused(refused_as, str(error))
        if str(body.get("token_type", "")).lower() != "bearer":
            raise SignInRefused(refused_as, f"token type {body.get('token_type')!r}, expected Bearer")
        return TokenResponse(access_token=body["access_token"], id_token=_str_or_none(body.get("id_token")),
                             refresh_token=_str_or_none(body.get("refresh_token")), expires_in=body.get("expires_in"))

    async def verify_id_token(self, id_token: str | None) -> dict[str, Any]:
        """The ID token's claims once its signature (the provider's keys; RS256/ES256), issuer,
        audience (this client), expiry and issue time are right; the nonce is the caller's to check."""
        if not id_token:
            raise SignInRefused("id_token", "the provider sent no ID token (is 'openid' among the scopes?)")
        return await run_in_threadpool(self._decode_id_token, id_token)

    def _decode_id_token(self, id_token: str) -> dict[str, Any]:
        s = self.settings.oidc
        try:
            key = self._verifier.jwks().get_signing_key_from_jwt(id_token)
        except jwt.PyJWKClientConnectionError as exc:
            raise ProviderUnavailable(str(exc)) from exc
        except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
            raise SignInRefused("id_token", f"no key of the provider signed it: {exc}") from None
        try:
            return jwt.decode(id_token, key, algorithms=list(s.algorithm_list), audience=self.client_id,
                              issuer=s.issuer, leeway=s.leeway_seconds,
                              options={"require": ["iss", "aud", "exp", "iat", "sub"], "verify_nbf": True})
        except jwt.InvalidTokenError as exc:
            raise SignInRefused("id_token", str(exc)) from None

    def identity(self, claims: dict[str, Any]) -> tuple[str, str, str]:
        """(staff id, role, area) by the same claims and groups the services read."""
        try:
            return self._verifier.identity(claims)
        except InvalidStaffToken as exc:
            raise SignInRefused("role", str(exc)) from None

    async def end_session_url(self, post_logout_redirect_uri: str) -> str | None:
        """RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) when the provider offers it."""
        endpoint = (await self.discovery()).get("end_session_endpoint")
        if not endpoint:
            return None
        query = urlencode({"client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect_uri})
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def _json_object(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _str_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None
