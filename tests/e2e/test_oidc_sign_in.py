"""Staff signed in through the real local identity provider (Dex) reach the four services.

Every demo staff member gets an access token from Dex by the password grant (what
``civicgrid-token --oidc`` does) and calls a staff endpoint of each service: the answer must be the
one a development token with the same staff id, role and area gets (200 where the role may, 403
where it may not) -- so the provider's tokens reach every staff endpoint the role allows. Tokens
from a second Dex, an issuer the services do not trust, are refused with 401 everywhere.

The services run as processes against the real broker and store, trusting the first provider.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request

import httpx
import pytest

from civicgrid_runtime.auth import mint_token
from tests.support.platform import ROOT, Platform, free_port, running

sys.path.insert(0, str(ROOT / "deploy" / "local"))
import identity  # noqa: E402 - deploy/local is not a package

pytestmark = [pytest.mark.infra, pytest.mark.timeout(600)]
DEV_SECRET = "civicgrid-development-secret-change-me"
#: one staff endpoint of each service (matching's volunteers have their own)
ENDPOINTS = [("intake", "/api/v1/requests"), ("grid", "/v1/queue"), ("matching", "/volunteers?limit=5"),
             ("matching", "/me/offers"), ("audit", "/supervision/overdue")]


def password_grant(port: int, staff_id: str) -> str:
    env = identity.settings_env(port)
    form = {"grant_type": "password", "username": identity.email(staff_id), "password": identity.DEMO_PASSWORD,
            "scope": " ".join(env["CIVICGRID_OIDC_SCOPE"].split(",")), "client_id": identity.CLI_CLIENT,
            "client_secret": identity.CLI_SECRET}
    req = urllib.request.Request(f"{identity.issuer(port)}/token", data=urllib.parse.urlencode(form).encode())
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["access_token"]


@pytest.fixture(scope="module")
def providers(tmp_path_factory):
    """(trusted port, untrusted port): two Dex processes of our own on free loopback ports."""
    workdir = tmp_path_factory.mktemp("identity")
    ports = free_port(), free_port()
    procs = [identity.start(port, workdir) for port in ports]
    try:
        for port, proc in zip(ports, procs, strict=True):
            identity.wait_ready(port, proc)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def oidc_platform(infra, providers):
    trusted, _ = providers
    env = {k: v for k, v in identity.settings_env(trusted).items() if k.startswith("CIVICGRID_OIDC_")}
    # no request is submitted here: intake need not read back its duplicate window before serving
    p = Platform(infra.kafka, infra.mongodb, extra_env={**env, "CIVICGRID_ENV": "development",
                                                        "INTAKE_DUPLICATE_CATCH_UP_SECONDS": "1"})
    with running(p, demo=False):
        yield p


def test_the_cli_gets_a_token_from_the_provider(providers):
    trusted, _ = providers
    env = {**os.environ, **identity.settings_env(trusted)}
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "civicgrid-token"), "--oidc", "--user",
                          identity.email("admin"), "--password", identity.DEMO_PASSWORD],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    import jwt

    claims = jwt.decode(out.stdout.strip(), options={"verify_signature": False})
    assert claims["iss"] == identity.issuer(trusted) and "civicgrid" in claims["aud"]
    assert claims["preferred_username"] == "admin" and "civicgrid-role:admin" in claims["groups"]


async def test_provider_tokens_reach_every_staff_endpoint_as_their_role_allows(oidc_platform, providers):
    trusted, _ = providers
    seen: dict[tuple[str, str], set[int]] = {}
    async with httpx.AsyncClient(timeout=30) as client:
        for staff_id, role, area in identity.DEMO_STAFF:
            oidc = password_grant(trusted, staff_id)
            dev = mint_token(secret=DEV_SECRET, sub=staff_id, role=role, area=area)
            for svc, path in ENDPOINTS:
                url = oidc_platform.url(svc) + path
                by_oidc = await client.get(url, headers={"Authorization": f"Bearer {oidc}"})
                by_dev = await client.get(url, headers={"Authorization": f"Bearer {dev}"})
                assert by_oidc.status_code == by_dev.status_code, (staff_id, svc, path, by_oidc.text, by_dev.text)
                assert by_oidc.status_code in (200, 403), (staff_id, svc, path, by_oidc.text)
                seen.setdefault((svc, path), set()).add(by_oidc.status_code)
    for endpoint, statuses in seen.items():
        assert 200 in statuses, f"no demo role reached {endpoint}"


async def test_tokens_of_an_untrusted_issuer_are_refused_everywhere(oidc_platform, providers):
    _, untrusted = providers
    token = password_grant(untrusted, "admin")  # same users, same claims: only the issuer differs
    async with httpx.AsyncClient(timeout=30) as client:
        for svc, path in ENDPOINTS:
            r = await client.get(oidc_platform.url(svc) + path, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, (svc, path, r.text)
            assert r.headers["content-type"] == "application/problem+json"


def test_the_console_signs_in_with_authorization_code_and_pkce(providers):
    """What the console does: the public client ``civicgrid-console`` sends the browser to the
    provider, the staff member signs in, the provider redirects to the console's callback with a
    code, and the console trades it (with its PKCE verifier, no secret) for tokens."""
    import base64
    import hashlib
    import re
    import secrets

    trusted, _ = providers
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    scope = " ".join(identity.settings_env(trusted)["CIVICGRID_OIDC_SCOPE"].split(","))
    query = {"client_id": identity.CONSOLE_CLIENT, "redirect_uri": identity.CONSOLE_REDIRECT,
             "response_type": "code", "scope": scope, "state": "st4te", "code_challenge": challenge,
             "code_challenge_method": "S256"}
    with httpx.Client(base_url=identity.issuer(trusted), timeout=10) as browser:
        login_page = browser.get("/auth", params=query, follow_redirects=True)
        assert login_page.status_code == 200 and 'name="password"' in login_page.text
        r = browser.post(str(login_page.url), data={"login": identity.email("c110101001001"),
                                                    "password": identity.DEMO_PASSWORD})
        for _ in range(5):  # the provider's own redirects, up to the console's callback
            location = r.headers.get("location", "")
            if location.startswith(identity.CONSOLE_REDIRECT):
                break
            assert r.status_code in (302, 303), (r.status_code, r.text[:500])
            r = browser.get(location)
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        assert params["state"] == "st4te" and re.fullmatch(r"[\w-]+", params["code"])
        form = {"grant_type": "authorization_code", "code": params["code"], "client_id": identity.CONSOLE_CLIENT,
                "redirect_uri": identity.CONSOLE_REDIRECT}
        assert browser.post("/token", data={**form, "code_verifier": "x" * 50}).status_code >= 400
        tokens = browser.post("/token", data={**form, "code_verifier": verifier})
        assert tokens.status_code == 200, tokens.text
    from civicgrid_runtime.oidc import OidcVerifier
    from civicgrid_runtime.settings import OidcSettings

    oidc = OidcSettings(**{k.removeprefix("CIVICGRID_OIDC_").lower(): v for k, v in identity.settings_env(trusted).items()
                           if k.removeprefix("CIVICGRID_OIDC_").lower() in OidcSettings.model_fields})
    assert OidcVerifier(oidc).verify(tokens.json()["access_token"]) == ("c110101001001", "supervisor", "110101001001")
