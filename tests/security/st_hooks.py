"""schemathesis hooks (SCHEMATHESIS_HOOKS=tests.security.st_hooks): every generated case is sent with
the next caller of a rotation -- admin (which reaches every operation's logic) every other case,
and in between each other role in turn and no token at all."""

from __future__ import annotations

import itertools
import os

import schemathesis

from civicgrid_runtime.auth import ROLES, mint_token
from civicgrid_runtime.settings import DEV_AUTH_SECRET

SECRET = os.environ.get("CIVICGRID_AUTH_SECRET") or DEV_AUTH_SECRET
OTHERS = [r for r in ROLES if r != "admin"] + [None]
CALLERS = itertools.cycle([c for other in OTHERS for c in ("admin", other)])
TOKENS = {role: mint_token(secret=SECRET, sub="fuzz", role=role) for role in ROLES}


@schemathesis.auth(refresh_interval=None)
class EveryRole:
    def get(self, case, context):
        return next(CALLERS)

    def set(self, case, role, context):
        if role is not None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKENS[role]}"}
