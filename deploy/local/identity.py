"""The local OpenID Connect provider: Dex (CNCF), built from the Go module proxy, run on loopback.

``make run`` and the tests start it through infra.py; it stands in for the identity provider a city
already runs (README: "Signing in through the city's identity provider"). Its users are the demo
staff of every role: the role and area travel as groups (``civicgrid-role:<role>``,
``civicgrid-area:<code>``), the staff id as ``preferred_username``. Every demo user's password is
``civicgrid-demo``; the storage is in memory, so nothing outlives the process.

Clients: ``civicgrid`` is the APIs' audience (its trusted peers may ask for tokens addressed to it
with the scope ``audience:server:client_id:civicgrid``); ``civicgrid-console`` is the console, a
public client (authorization code + PKCE) whose callback follows the console's public URL
(``CONSOLE_PUBLIC_URL``, else loopback on ``CONSOLE_HTTP_PORT``); ``civicgrid-cli`` gets tokens for
scripts with the password grant (``civicgrid-token --oidc``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("CIVICGRID_CACHE_DIR", Path.home() / ".cache" / "civicgrid"))


def _module_digest() -> str:
    import hashlib

    h = hashlib.sha256()
    for name in ("go.mod", "go.sum"):  # a changed version gets its own cached binary
        h.update((HERE / "dex" / name).read_bytes())
    return h.hexdigest()[:12]


DEX_BIN = CACHE / "bin" / f"civicgrid-dex-2.45.1-{_module_digest()}"
DEX_PORT = int(os.environ.get("CIVICGRID_DEX_PORT", "15556"))
AUDIENCE = "civicgrid"
CLI_CLIENT = "civicgrid-cli"
#: a local, published value like every development secret: the provider runs on loopback only
CLI_SECRET = "civicgrid-cli-development-secret"
CONSOLE_CLIENT = "civicgrid-console"
#: what the console asks for: who (openid, profile: preferred_username), the groups carrying role and
#: area, a refresh token, and Dex's cross-client scope that addresses the access token to the APIs
CONSOLE_SCOPES = f"openid profile groups offline_access audience:server:client_id:{AUDIENCE}"
DEMO_PASSWORD = "civicgrid-demo"
#: bcrypt (cost 10) of DEMO_PASSWORD
DEMO_PASSWORD_HASH = "$2b$10$P8S/QzjvTnmrpLFJHc6pyeUgn70LEZWfim/dGV8EechAgesQxsyRG"
#: comma-separated: the env files the tools write are split on whitespace
SCOPES = f"openid,profile,email,groups,audience:server:client_id:{AUDIENCE}"

#: the demo staff (grid's load-demo roster for the demo city, district seed 7, plus the roles grid
#: does not hand out): staff id, role, area scope ("" = the whole district)
DEMO_GRID = "110101001001001"
DEMO_STAFF = [
    (f"s{DEMO_GRID}-1", "grid_worker", DEMO_GRID),
    (f"s{DEMO_GRID}-2", "grid_worker", DEMO_GRID),
    (f"h{DEMO_GRID}", "grid_worker", DEMO_GRID),
    (f"c{DEMO_GRID[:12]}", "supervisor", DEMO_GRID[:12]),
    (f"t{DEMO_GRID[:9]}", "supervisor", DEMO_GRID[:9]),
    ("operator-1", "operator", ""),
    ("chengguan", "department", ""),
    ("demo-vol-0001", "volunteer", ""),
    ("auditor-1", "auditor", ""),
    ("admin", "admin", ""),
]


def issuer(port: int = DEX_PORT) -> str:
    return f"http://127.0.0.1:{port}/dex"


def console_public_url() -> str:
    """Where browsers reach the console, as the console itself reads it: CONSOLE_PUBLIC_URL, else
    loopback on CONSOLE_HTTP_PORT (8100)."""
    given = os.environ.get("CONSOLE_PUBLIC_URL") or f"http://127.0.0.1:{os.environ.get('CONSOLE_HTTP_PORT', '8100')}"
    return given.rstrip("/")


def console_redirect(public_url: str | None = None) -> str:
    """The console's sign-in callback, which the provider must know before it sends anyone there."""
    return f"{public_url or console_public_url()}/auth/callback"


#: the console's callback on its default port (CONSOLE_PUBLIC_URL / CONSOLE_HTTP_PORT move it)
CONSOLE_REDIRECT = console_redirect()


def email(staff_id: str) -> str:
    return f"{staff_id}@civicgrid.local"


def settings_env(port: int = DEX_PORT) -> dict[str, str]:
    """What the services and the CLI need to trust and use this provider."""
    return {
        "CIVICGRID_OIDC_ISSUER": issuer(port),
        "CIVICGRID_OIDC_AUDIENCE": AUDIENCE,
        "CIVICGRID_OIDC_SUBJECT_CLAIM": "preferred_username",
        "CIVICGRID_OIDC_CLIENT_ID": CLI_CLIENT,
        "CIVICGRID_OIDC_CLIENT_SECRET": CLI_SECRET,
        "CIVICGRID_OIDC_SCOPE": SCOPES,
    }


def console_env(public_url: str | None = None) -> dict[str, str]:
    """What the console needs besides the platform-wide CIVICGRID_OIDC_* to sign staff in here."""
    return {"CONSOLE_OIDC_CLIENT_ID": CONSOLE_CLIENT, "CONSOLE_OIDC_SCOPES": CONSOLE_SCOPES,
            "CONSOLE_PUBLIC_URL": public_url or console_public_url()}


def config(port: int = DEX_PORT, staff: list[tuple[str, str, str]] | None = None,
           console_urls: list[str] | None = None) -> dict:
    users = [{"email": email(sid), "username": sid, "preferredUsername": sid, "userID": sid,
              "hash": DEMO_PASSWORD_HASH, "groups": [f"civicgrid-role:{role}"] + ([f"civicgrid-area:{area}"]
                                                                                  if area else [])}
             for sid, role, area in (staff or DEMO_STAFF)]
    return {
        "issuer": issuer(port),
        "storage": {"type": "memory"},
        "web": {"http": f"127.0.0.1:{port}"},
        "logger": {"level": "info", "format": "text"},
        "expiry": {"idTokens": "1h", "signingKeys": "6h"},
        "oauth2": {"passwordConnector": "local", "skipApprovalScreen": True,
                   "grantTypes": ["authorization_code", "refresh_token", "password"],
                   "responseTypes": ["code"]},
        "enablePasswordDB": True,
        "staticClients": [
            {"id": AUDIENCE, "name": "civicgrid APIs", "secret": "civicgrid-api-development-secret",
             "trustedPeers": [CONSOLE_CLIENT, CLI_CLIENT]},
            {"id": CONSOLE_CLIENT, "name": "civicgrid console", "public": True,
             "redirectURIs": [console_redirect(u) for u in (console_urls or [console_public_url()])]},
            {"id": CLI_CLIENT, "name": "civicgrid scripts", "secret": CLI_SECRET},
        ],
        "staticPasswords": users,
    }


def write_config(path: Path, port: int = DEX_PORT, console_urls: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config(port, console_urls=console_urls), indent=1))  # JSON is YAML: Dex reads it as is
    return path


def command(config_path: Path) -> list[str]:
    return [str(DEX_BIN), "serve", str(config_path)]


def setup() -> None:
    if DEX_BIN.exists():
        print(f"[infra] dex binary cached at {DEX_BIN}", flush=True)
        return
    if not _which("go"):
        sys.exit("[infra] Go is needed to build Dex from the Go module proxy")
    print("[infra] building Dex (the local OpenID Connect provider) from the Go module proxy (first run only)...",
          flush=True)
    DEX_BIN.parent.mkdir(parents=True, exist_ok=True)
    # the module in deploy/local/dex requires Dex as a tool at a fixed version (go.sum pins it)
    env = dict(os.environ, CGO_ENABLED="0")
    subprocess.run(["go", "build", "-trimpath", "-o", str(DEX_BIN), "github.com/dexidp/dex/cmd/dex"],
                   cwd=HERE / "dex", check=True, env=env)


def _which(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None


def start(port: int, workdir: Path, console_urls: list[str] | None = None) -> subprocess.Popen:
    """A provider of its own on ``port`` (tests start a second, untrusted one this way, or one for a
    console on a port of their own: ``console_urls``); the caller stops it."""
    setup()
    config = write_config(workdir / f"dex-{port}.json", port, console_urls)
    log = open(workdir / f"dex-{port}.log", "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(command(config), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the identity provider on port {port} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{issuer(port)}/.well-known/openid-configuration", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the identity provider on port {port} did not answer in {timeout:.0f}s")
