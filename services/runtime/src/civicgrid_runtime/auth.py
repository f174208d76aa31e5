"""Bearer-token authentication for the staff APIs.

Tokens are JWTs (HS256, secret from ``CIVICGRID_AUTH_SECRET``) carrying ``sub`` (a pseudonymous
staff/department/volunteer id), ``role`` and ``area`` (an area code prefix: a grid worker's token
names their grid, a community supervisor's their community, ``""`` the whole district). A missing
token is 401, a valid token without the needed role or area is 403, both as problem details.

    civicgrid-token --role grid_worker --area 110105001001001 --sub staff-17
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from typing import Literal

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from civicgrid_runtime.problems import Problem

Role = Literal["resident", "operator", "grid_worker", "supervisor", "department", "volunteer", "auditor", "admin"]
ROLES: tuple[str, ...] = ("resident", "operator", "grid_worker", "supervisor", "department", "volunteer", "auditor",
                          "admin")
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


def decode_token(token: str, *, secret: str) -> Principal:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER,
                            options={"require": ["sub", "exp", "iss"]})
    except jwt.ExpiredSignatureError:
        raise Problem(401, "Token expired", "The bearer token has expired; mint a new one.",
                      type_="unauthorized", headers={"WWW-Authenticate": "Bearer"}) from None
    except jwt.InvalidTokenError as exc:
        raise Problem(401, "Invalid token", f"The bearer token is not valid: {exc}", type_="unauthorized",
                      headers={"WWW-Authenticate": "Bearer"}) from None
    role = claims.get("role")
    if role not in ROLES:
        raise Problem(401, "Invalid token", f"Unknown role {role!r} in token", type_="unauthorized")
    return Principal(sub=str(claims["sub"]), role=role, area=str(claims.get("area") or ""))


_bearer = HTTPBearer(auto_error=False)


def principal(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    """FastAPI dependency: the authenticated caller (401 when missing or invalid)."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise Problem(401, "Authentication required", "Send 'Authorization: Bearer <token>'.", type_="unauthorized",
                      headers={"WWW-Authenticate": "Bearer"})
    return decode_token(creds.credentials, secret=request.app.state.auth_secret)


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
    parser = argparse.ArgumentParser(description="Mint a development bearer token for civicgrid's staff APIs")
    parser.add_argument("--role", required=True, choices=ROLES)
    parser.add_argument("--sub", default="dev")
    parser.add_argument("--area", default="", help="area code prefix the token is scoped to ('' = everywhere)")
    parser.add_argument("--ttl", type=int, default=12 * 3600, help="seconds")
    args = parser.parse_args(argv)
    secret = os.environ.get("CIVICGRID_AUTH_SECRET", "civicgrid-development-secret-change-me")
    print(mint_token(secret=secret, sub=args.sub, role=args.role, area=args.area, ttl_seconds=args.ttl))
