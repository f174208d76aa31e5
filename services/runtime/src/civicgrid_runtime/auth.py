"""Bearer-token authentication for the staff APIs.

Two kinds of token, told apart by their ``alg`` header (docs/adr/0500-oidc-staff-sign-in.md):

* access tokens of the city's OpenID Connect provider (RS256/ES256, ``CIVICGRID_OIDC_*``, see
  ``civicgrid_runtime.oidc``) -- the only kind accepted outside development mode;
* development tokens (HS256, secret ``CIVICGRID_AUTH_SECRET``), accepted only while
  ``CIVICGRID_ENV=development``, carrying ``sub``, ``role`` and ``area``.

Either way the caller becomes a ``Principal``: ``sub`` (a pseudonymous staff/department/volunteer
id), ``role`` and ``area`` (an area code prefix: a grid worker's token names their grid, a community
supervisor's their community, ``""`` the whole district). A missing or refused token is 401, a valid
token without the needed role or area is 403, both as problem details; a provider that cannot be
reached is 503.

    civicgrid-token --role grid_worker --area 110105001001001 --sub staff-17      # development
    civicgrid-token --oidc --user admin@civicgrid.local --password ...           # from the provider
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Literal

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from civicgrid_runtime.oidc import STAFF_ROLES, InvalidStaffToken, OidcVerifier, ProviderUnavailable
from civicgrid_runtime.problems import Problem
from civicgrid_runtime.settings import DEVELOPMENT, ServiceSettings

Role = Literal["resident", "operator", "grid_worker", "supervisor", "department", "volunteer", "auditor", "admin"]
#: residents hold development tokens in tests; the identity provider grants only the staff roles
ROLES: tuple[str, ...] = ("resident", *STAFF_ROLES)
ALGORITHM = "HS256"
ISSUER = "civicgrid"


@dataclass(frozen=True)
class Principal:
    sub: str
    role: str
    area: str = ""

    def covers(self, area_code: str | None) -> bool:
        """Whether this principal's area scope includes ``area_code`` (codes nest by prefix)."""
        if self.role == "admin" or self.area == "":
            return True
        return bool(area_code) and area_code.startswith(self.area)


def mint_token(*, secret: str, sub: str, role: str, area: str = "", ttl_seconds: int = 12 * 3600) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    now = int(time.time())
    return jwt.encode({"sub": sub, "role": role, "area": area, "iat": now, "exp": now + ttl_seconds, "iss": ISSUER},
                      secret, algorithm=ALGORITHM)


def _unauthorized(title: str, detail: str) -> Problem:
    return Problem(401, title, detail, type_="unauthorized", headers={"WWW-Authenticate": "Bearer"})


def decode_token(token: str, *, secret: str) -> Principal:
    """A development token (HS256); whether such tokens are accepted at all is ``TokenVerifier``'s call."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER,
                            options={"require": ["sub", "exp", "iss"]})
    except jwt.ExpiredSignatureError:
        raise _unauthorized("Token expired", "The bearer token has expired; mint a new one.") from None
    except jwt.InvalidTokenError as exc:
        raise _unauthorized("Invalid token", f"The bearer token is not valid: {exc}") from None
    role = claims.get("role")
    if role not in ROLES:
        raise _unauthorized("Invalid token", f"Unknown role {role!r} in token")
    return Principal(sub=str(claims["sub"]), role=role, area=str(claims.get("area") or ""))


@dataclass(frozen=True)
class TokenVerifier:
    """Which tokens this process accepts: development ones only in development mode, the provider's
    whenever an issuer is configured."""

    development: bool
    oidc: OidcVerifier | None = None

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> TokenVerifier:
        return cls(development=settings.development,
                   oidc=OidcVerifier(settings.oidc) if settings.oidc.issuer else None)

    def verify(self, token: str, *, dev_secret: str) -> Principal:
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError as exc:
            raise _unauthorized("Invalid token", f"The bearer token is not valid: not a JWT ({exc})") from None
        if alg == ALGORITHM:
            if not self.development:
                raise _unauthorized("Invalid token", "Development tokens (HS256) are accepted only with "
                                    "CIVICGRID_ENV=development; sign in with the identity provider.")
            return decode_token(token, secret=dev_secret)
        if self.oidc is None:
            raise _unauthorized("Invalid token", f"Tokens signed with {alg!r} are not accepted: no identity provider "
                                "is configured (CIVICGRID_OIDC_ISSUER).")
        if alg not in self.oidc.settings.algorithm_list:
            raise _unauthorized("Invalid token", f"Algorithm {alg!r} is not accepted; one of "
                                f"{', '.join(self.oidc.settings.algorithm_list)}.")
        try:
            sub, role, area = self.oidc.verify(token)
        except InvalidStaffToken as exc:
            raise _unauthorized("Invalid token", f"The bearer token is not valid: {exc}") from None
        except ProviderUnavailable as exc:
            raise Problem(503, "Identity provider unavailable", f"Tokens cannot be checked now: {exc}",
                          type_="identity-provider-unavailable", headers={"Retry-After": "5"}) from None
        return Principal(sub=sub, role=role, area=area)


def install_auth(app, settings: ServiceSettings) -> None:
    """What ``principal`` reads: the accepted tokens and the development key."""
    app.state.token_verifier = TokenVerifier.from_settings(settings)
    app.state.auth_secret = settings.auth_secret.get_secret_value()


def _verifier_of(app) -> TokenVerifier:
    verifier = getattr(app.state, "token_verifier", None)
    if verifier is None:  # an app a test assembled from routers: the platform's mode, no provider
        verifier = app.state.token_verifier = TokenVerifier(
            development=os.environ.get("CIVICGRID_ENV") == DEVELOPMENT)
    return verifier


def authenticate(request: Request, token: str) -> Principal:
    """The caller a bearer token names (401 when refused, 503 when the provider cannot be reached)."""
    return _verifier_of(request.app).verify(token, dev_secret=request.app.state.auth_secret)


_bearer = HTTPBearer(auto_error=False)


def principal(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    """FastAPI dependency: the authenticated caller (401 when missing or invalid)."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise _unauthorized("Authentication required", "Send 'Authorization: Bearer <token>'.")
    return authenticate(request, creds.credentials)


def require(*roles: str):
    """FastAPI dependency factory: the caller must have one of ``roles`` (admin always may)."""

    def check(p: Principal = Depends(principal)) -> Principal:
        if p.role != "admin" and p.role not in roles:
            raise Problem(403, "Forbidden", f"Role {p.role!r} may not do this; needs one of {', '.join(roles)}.",
                          type_="forbidden")
        return p

    return check


def require_area(p: Principal, area_code: str | None) -> None:
    if not p.covers(area_code):
        raise Problem(403, "Outside your area", f"Your scope {p.area!r} does not include {area_code!r}.",
                      type_="forbidden")


def mint_token_cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="A bearer token for civicgrid's staff APIs: a development token (HS256, accepted only with "
                    "CIVICGRID_ENV=development), or with --oidc an access token from the identity provider")
    parser.add_argument("--oidc", action="store_true", help="ask the provider (CIVICGRID_OIDC_ISSUER) for a token")
    parser.add_argument("--user", help="--oidc: the staff member's login (the local provider: <staff id>@civicgrid.local)")
    parser.add_argument("--password", help="--oidc: default $CIVICGRID_OIDC_PASSWORD, else asked for")
    parser.add_argument("--role", choices=ROLES)
    parser.add_argument("--sub", default="dev")
    parser.add_argument("--area", default="", help="area code prefix the token is scoped to ('' = everywhere)")
    parser.add_argument("--ttl", type=int, default=12 * 3600, help="seconds")
    args = parser.parse_args(argv)
    if args.oidc:
        if not args.user:
            parser.error("--oidc needs --user")
        password = args.password or os.environ.get("CIVICGRID_OIDC_PASSWORD")
        if password is None:
            import getpass

            password = getpass.getpass(f"password of {args.user}: ")
        try:
            print(password_grant(args.user, password))
        except OSError as exc:
            sys.exit(f"civicgrid-token: the identity provider refused or could not be reached: {exc}")
        return
    if not args.role:
        parser.error("--role is required for a development token")
    secret = os.environ.get("CIVICGRID_AUTH_SECRET", "civicgrid-development-secret-change-me")
    print(mint_token(secret=secret, sub=args.sub, role=args.role, area=args.area, ttl_seconds=args.ttl))


def password_grant(user: str, password: str) -> str:
    """An access token from the provider for a script, by the resource-owner password grant
    (``CIVICGRID_OIDC_ISSUER``, ``_CLIENT_ID``, ``_CLIENT_SECRET`` and ``_SCOPE`` from the environment)."""
    from civicgrid_runtime.settings import OidcSettings

    oidc = OidcSettings()
    if not oidc.issuer:
        raise OSError("CIVICGRID_OIDC_ISSUER is not set")
    token_endpoint = OidcVerifier(oidc).discover()["token_endpoint"]
    form = {"grant_type": "password", "username": user, "password": password,
            "scope": " ".join(oidc.scope.split(",")), "client_id": oidc.client_id}
    if oidc.client_secret.get_secret_value():
        form["client_secret"] = oidc.client_secret.get_secret_value()
    req = urllib.request.Request(token_endpoint, data=urllib.parse.urlencode(form).encode(), method="POST",
                                 headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=oidc.http_timeout_seconds) as r:  # noqa: S310 - the issuer's endpoint
        return json.load(r)["access_token"]
