"""The development sign-in (only when ``CIVICGRID_ENV=development``): pick a demo person, and the
console mints the same HS256 development token the services accept
(``civicgrid_runtime.auth.mint_token``, as ``civicgrid-token`` does). It turns "who is this" into an
``Identity``: the person's id, role, area and the bearer token the console then sends to the
services on their behalf. Staff everywhere else sign in at the identity provider (adapters/oidc.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from civicgrid_console.adapters.api import ApiError, Apis
from civicgrid_runtime.auth import ROLES, mint_token


@dataclass(frozen=True)
class Identity:
    sub: str
    role: str
    area: str
    token: str
    label: str


@dataclass(frozen=True)
class DemoAccount:
    sub: str
    role: str
    area: str
    label_key: str  # an i18n key; label_args fill it
    label_args: tuple[tuple[str, str], ...] = ()


class DevelopmentSignIn:
    """Pick a demo person; the token is minted here with the platform's development secret."""

    name = "development"

    def __init__(self, apis: Apis, *, secret: str, ttl_seconds: int) -> None:
        self.apis, self.secret, self.ttl_seconds = apis, secret, ttl_seconds

    def identity(self, *, sub: str, role: str, area: str, label: str) -> Identity:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        token = mint_token(secret=self.secret, sub=sub, role=role, area=area, ttl_seconds=self.ttl_seconds)
        return Identity(sub=sub, role=role, area=area, token=token, label=label or sub)

    async def accounts(self) -> list[DemoAccount]:
        """The demo city's people for the first grids (the roster's ids: s<grid>-1 holds post A,
        s<grid>-2 post B, h<grid> heads the grid, c/t/d<code> supervise community, street, district),
        its departments and a few volunteers, read from the services as they are now."""
        out: list[DemoAccount] = []
        try:
            grids = (await self.apis.grid.call("GET", "/v1/map/grids", params={"limit": 2}))["grids"]
        except ApiError:
            grids = []
        for i, g in enumerate(grids):
            code = g["grid"]
            out += [DemoAccount(f"s{code}-1", "grid_worker", code, "demo.worker_a", (("n", str(i + 1)),)),
                    DemoAccount(f"s{code}-2", "grid_worker", code, "demo.worker_b", (("n", str(i + 1)),))]
        if grids:
            g = grids[0]["grid"]
            out += [DemoAccount(f"h{g}", "grid_worker", g, "demo.grid_head"),
                    DemoAccount(f"c{g[:12]}", "supervisor", g[:12], "demo.community"),
                    DemoAccount(f"t{g[:9]}", "supervisor", g[:9], "demo.street"),
                    DemoAccount(f"d{g[:6]}", "supervisor", "", "demo.district")]
        try:
            departments = await self.apis.grid.call("GET", "/v1/departments")
        except ApiError:
            departments = []
        out += [DemoAccount(d["_id"], "department", "", "demo.department", (("name", d.get("name", d["_id"])),))
                for d in departments[:3]]
        staff = mint_token(secret=self.secret, sub="console-dev-sign-in", role="supervisor", ttl_seconds=60)
        try:
            vols = await self.apis.matching.call("GET", "/volunteers", token=staff, params={"limit": 3})
        except ApiError:
            vols = []
        out += [DemoAccount(v["id"], "volunteer", "", "demo.volunteer", (("name", v.get("name", v["id"])),))
                for v in vols]
        out += [DemoAccount("auditor-1", "auditor", "", "demo.auditor"),
                DemoAccount("admin", "admin", "", "demo.admin")]
        return out
