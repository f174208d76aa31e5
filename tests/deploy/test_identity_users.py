"""The local identity provider's users are the demo staff: every staff role, with the ids and areas
the demo city gives them (grid's load-demo roster, matching's demo volunteer roster)."""

from __future__ import annotations

import json
import sys

from civicgrid_grid.demo.citygen import generate
from civicgrid_grid.settings import GridSettings
from civicgrid_runtime.oidc import STAFF_ROLES
from tests.support.platform import ROOT

sys.path.insert(0, str(ROOT / "deploy" / "local"))
import identity  # noqa: E402 - deploy/local is not a package


def test_every_staff_role_has_a_demo_user_and_no_resident_does():
    roles = {role for _, role, _ in identity.DEMO_STAFF}
    assert roles == set(STAFF_ROLES)


def test_demo_users_are_the_demo_citys_staff():
    settings = GridSettings()
    assert generate(settings.demo_size, settings.demo_seed).grids.codes[0] == identity.DEMO_GRID
    volunteers = {sid for sid, role, _ in identity.DEMO_STAFF if role == "volunteer"}
    roster = ROOT / "deploy" / "local" / "demo" / "volunteers.jsonl"  # what matching's load-demo imports
    assert volunteers <= {json.loads(line)["id"] for line in roster.read_text().splitlines() if line.strip()}


def test_the_provider_config_registers_the_console_and_the_cli(monkeypatch):
    monkeypatch.delenv("CONSOLE_PUBLIC_URL", raising=False)
    monkeypatch.delenv("CONSOLE_HTTP_PORT", raising=False)
    cfg = identity.config(15556)
    clients = {c["id"]: c for c in cfg["staticClients"]}
    assert clients[identity.CONSOLE_CLIENT]["public"] is True
    assert clients[identity.CONSOLE_CLIENT]["redirectURIs"] == ["http://127.0.0.1:8100/auth/callback"]
    assert set(clients[identity.AUDIENCE]["trustedPeers"]) == {identity.CONSOLE_CLIENT, identity.CLI_CLIENT}
    users = {u["username"]: u for u in cfg["staticPasswords"]}
    assert users["c110101001001"]["groups"] == ["civicgrid-role:supervisor", "civicgrid-area:110101001001"]


def test_the_consoles_callback_follows_its_public_url_or_port(monkeypatch):
    def redirects() -> list[str]:
        clients = {c["id"]: c for c in identity.config(15556)["staticClients"]}
        return clients[identity.CONSOLE_CLIENT]["redirectURIs"]

    monkeypatch.delenv("CONSOLE_PUBLIC_URL", raising=False)
    monkeypatch.setenv("CONSOLE_HTTP_PORT", "8200")
    assert redirects() == ["http://127.0.0.1:8200/auth/callback"]
    monkeypatch.setenv("CONSOLE_PUBLIC_URL", "https://console.city.example/")
    assert redirects() == ["https://console.city.example/auth/callback"]
    assert identity.console_env()["CONSOLE_PUBLIC_URL"] == "https://console.city.example"
    assert "audience:server:client_id:civicgrid" in identity.console_env()["CONSOLE_OIDC_SCOPES"].split()
