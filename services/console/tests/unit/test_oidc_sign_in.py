"""Signing in through an OpenID Connect provider: PKCE, state and nonce, refresh and sign-out.

The provider is a fake of our own on loopback (discovery, a key set of keys generated here, a token
endpoint that checks the PKCE verifier against the challenge as a real provider does); the console
runs in-process with its real adapter (adapters/oidc.py), so the ID tokens are really signed and
really verified. The test plays the browser: it follows the console's redirect to the provider,
"signs the person in" there (a code bound to the request's challenge and nonce), and comes back to
the console's callback -- untouched, or with the state altered, replayed or expired, or with an ID
token that lacks the nonce. The real provider (Dex) and a real browser: tests/browser.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from civicgrid_console.adapters.session_cookie import COOKIE_NAME
from civicgrid_console.domain import signin
from civicgrid_console.domain.signin import PendingSignIn, SignInRefused
from civicgrid_console.entrypoints.http import build_app
from civicgrid_console.settings import ConsoleSettings
from civicgrid_runtime.settings import OidcSettings

CLIENT = "civicgrid-console"
PUBLIC_URL = "http://127.0.0.1:8100"
WORKER = {"preferred_username": "s110101001001001-1", "name": "Wang Fang",
          "groups": ["civicgrid-role:grid_worker", "civicgrid-area:110101001001001"]}


#: one signing key for the module: a 2048-bit RSA key costs up to half a second to generate
PROVIDER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class FakeProvider:
    """A provider on loopback: codes are handed out by ``sign_in`` (what the login form would do)."""

    server: ThreadingHTTPServer
    key: Any = PROVIDER_KEY
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    refresh_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    end_session: bool = False
    expires_in: int = 3600

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/dex"

    def discovery(self) -> dict[str, Any]:
        doc = {"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/auth",
               "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/keys"}
        if self.end_session:
            doc["end_session_endpoint"] = f"{self.issuer}/logout"
        return doc

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}

    def id_token(self, claims: dict[str, Any], *, key: Any = None) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "sub": "opaque-1", "aud": [CLIENT, "civicgrid"], "azp": CLIENT,
                "iat": now, "exp": now + 3600, **claims}
        return jwt.encode({k: v for k, v in body.items() if v is not None}, key or self.key, algorithm="RS256",
                          headers={"kid": "k1"})

    def sign_in(self, authorization_url: str, *, person: dict[str, Any] = WORKER, **id_claims: Any) -> dict[str, str]:
        """What the provider does once the person typed their password: a code bound to the request's
        challenge, and the ID token it will issue for it (with the request's nonce unless told
        otherwise); returns the query the provider would send the browser back with."""
        q = dict(parse_qsl(urlsplit(authorization_url).query))
        assert q["code_challenge_method"] == "S256" and q["response_type"] == "code"
        code = secrets.token_urlsafe(16)
        claims = {**person, "nonce": q["nonce"], **id_claims}
        self.codes[code] = {"challenge": q["code_challenge"], "redirect_uri": q["redirect_uri"],
                            "client_id": q["client_id"], "id_token": self.id_token(claims), "person": person}
        return {"state": q["state"], "code": code}

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.token_requests.append(form)
        if form.get("grant_type") == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)  # a code works once
            if grant is None or form.get("redirect_uri") != grant["redirect_uri"] \
                    or form.get("client_id") != grant["client_id"]:
                return 400, {"error": "invalid_grant", "error_description": "unknown code"}
            if s256(form.get("code_verifier", "")) != grant["challenge"]:
                return 400, {"error": "invalid_grant", "error_description": "PKCE verifier does not match"}
            return 200, self.tokens(grant["id_token"], grant["person"])
        if form.get("grant_type") == "refresh_token":
            grant = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if grant is None:
                return 400, {"error": "invalid_grant", "error_description": "refresh token revoked"}
            return 200, self.tokens(self.id_token(grant["person"]), grant["person"])
        return 400, {"error": "unsupported_grant_type"}

    def tokens(self, id_token: str, person: dict[str, Any]) -> dict[str, Any]:
        refresh = secrets.token_urlsafe(16)
        self.refresh_tokens[refresh] = {"person": person}
        return {"access_token": f"access-{secrets.token_urlsafe(8)}", "token_type": "bearer",
                "expires_in": self.expires_in, "id_token": id_token, "refresh_token": refresh}


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    holder: dict[str, FakeProvider] = {}

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 - http.server's name
            p = holder["p"]
            routes = {"/dex/.well-known/openid-configuration": p.discovery, "/dex/keys": p.jwks}
            self._send(200, routes[self.path]()) if self.path in routes else self._send(404, {})

        def do_POST(self):  # noqa: N802
            form = dict(parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
            self._send(*holder["p"].token(form))

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["p"] = FakeProvider(server)
    # a short poll: shutdown() waits for the loop's next poll (half a second by default)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield holder["p"]
    server.shutdown()
    server.server_close()


def settings_for(provider: FakeProvider, **kw: Any) -> ConsoleSettings:
    oidc = OidcSettings(issuer=provider.issuer, subject_claim="preferred_username", jwks_min_refetch_seconds=1)
    # nothing listens on the services' port: the tests here only sign in and out
    return ConsoleSettings(oidc=oidc, public_url=PUBLIC_URL, intake_url="http://127.0.0.1:9",
                           grid_url="http://127.0.0.1:9", matching_url="http://127.0.0.1:9",
                           audit_url="http://127.0.0.1:9", api_timeout_seconds=1, **kw)


@pytest.fixture
def console(provider):
    with TestClient(build_app(settings_for(provider)), base_url=PUBLIC_URL) as c:
        yield c


def session(c: TestClient) -> dict[str, Any]:
    return c.app.state.console.sessions.open(c.cookies.get(COOKIE_NAME)) or {}


def start(c: TestClient, next_path: str = "/work") -> str:
    r = c.get("/auth/login", params={"next": next_path}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return r.headers["location"]


# ---- the rules, without HTTP

def test_the_pkce_challenge_is_s256_of_the_verifier():
    # RFC 7636, appendix B
    attempt = PendingSignIn(state="s", nonce="n", verifier="dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                            next="", started_at=0)
    assert attempt.challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    a, b = PendingSignIn.start("/work", 0), PendingSignIn.start("/work", 0)
    assert len({a.state, b.state, a.nonce, b.nonce, a.verifier, b.verifier}) == 6, "fresh values every time"
    assert 43 <= len(a.verifier) <= 128 and all(ch.isalnum() or ch in "-._~" for ch in a.verifier)


def test_a_state_is_used_once_within_its_time_and_only_the_last_few_are_kept():
    attempts = [PendingSignIn.start(f"/{i}", now=1000.0 + i) for i in range(5)]
    pending: list[dict] = []
    for a in attempts:
        pending = signin.remember(pending, a, now=1010.0)
    assert [p["next"] for p in pending] == ["/2", "/3", "/4"]
    found, left = signin.take(pending, attempts[3].state, now=1010.0)
    assert found.next == "/3" and [p["next"] for p in left] == ["/2", "/4"]
    with pytest.raises(SignInRefused, match="state"):
        signin.take(left, attempts[3].state, now=1010.0)  # replayed
    with pytest.raises(SignInRefused, match="state"):
        signin.take(left, attempts[4].state[:-1] + "x", now=1010.0)  # altered
    with pytest.raises(SignInRefused, match="state"):
        signin.take(left, "", now=1010.0)
    with pytest.raises(SignInRefused, match="expired"):
        signin.take(left, attempts[4].state, now=1004.0 + signin.PENDING_SECONDS + 1)


def test_the_id_token_must_carry_this_attempts_nonce_and_be_meant_for_this_client():
    good = {"nonce": "n-1", "aud": [CLIENT, "civicgrid"], "azp": CLIENT}
    signin.check_id_token_claims(good, nonce="n-1", client_id=CLIENT)
    signin.check_id_token_claims({"nonce": "n-1", "aud": CLIENT}, nonce="n-1", client_id=CLIENT)
    for claims, reason in [({**good, "nonce": None}, "nonce"), ({k: v for k, v in good.items() if k != "nonce"}, "nonce"),
                           ({**good, "nonce": "n-2"}, "nonce"), ({**good, "aud": ["civicgrid"]}, "audience"),
                           ({**good, "azp": "another-client"}, "audience"),
                           ({k: v for k, v in good.items() if k != "azp"}, "audience")]:
        with pytest.raises(SignInRefused) as refused:
            signin.check_id_token_claims(claims, nonce="n-1", client_id=CLIENT)
        assert refused.value.reason == reason, claims


# ---- the whole round trip through the console

def test_sign_in_sends_pkce_state_and_nonce_and_signs_the_person_in(console, provider):
    url = start(console, "/work")
    assert url.startswith(f"{provider.issuer}/auth?")
    q = dict(parse_qsl(urlsplit(url).query))
    assert q["client_id"] == CLIENT and q["redirect_uri"] == f"{PUBLIC_URL}/auth/callback"
    assert "openid" in q["scope"].split() and q["code_challenge_method"] == "S256"
    pending = session(console)["pending"]
    assert [p["state"] for p in pending] == [q["state"]] and pending[0]["nonce"] == q["nonce"]
    assert q["code_challenge"] == s256(pending[0]["verifier"]) and pending[0]["verifier"] not in url

    r = console.get("/auth/callback", params=provider.sign_in(url), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/work"
    s = session(console)
    assert (s["sub"], s["role"], s["area"], s["method"]) == ("s110101001001001-1", "grid_worker",
                                                             "110101001001001", "oidc")
    assert s["token"].startswith("access-") and s["refresh_token"] and s["pending"] == []
    assert s["token_expires_at"] == pytest.approx(time.time() + 3600, abs=60)
    assert provider.token_requests[-1]["code_verifier"] == pending[0]["verifier"]
    assert "Wang Fang (s110101001001001-1)" in console.get("/").text


def test_a_tampered_replayed_or_foreign_state_is_refused(console, provider):
    answer = provider.sign_in(start(console))
    for state in (answer["state"][:-2] + "xx", "", "made-up-by-an-attacker"):
        r = console.get("/auth/callback", params={**answer, "state": state}, follow_redirects=False)
        assert r.status_code == 400 and "不一致" in r.text, state
        assert not session(console).get("sub")
    assert console.get("/auth/callback", params=answer, follow_redirects=False).status_code == 303
    console.post("/signout", data={"csrf": session(console)["csrf"]})
    r = console.get("/auth/callback", params=answer, follow_redirects=False)  # the same answer again
    assert r.status_code == 400 and not session(console).get("sub")
    # an answer to a sign-in another browser started
    other = TestClient(console.app, base_url=PUBLIC_URL)
    r = other.get("/auth/callback", params=provider.sign_in(start(console)), follow_redirects=False)
    assert r.status_code == 400 and not session(other).get("sub")


def test_a_missing_or_different_nonce_is_refused(console, provider):
    for nonce in (None, "not-the-one-sent"):
        answer = provider.sign_in(start(console), nonce=nonce)
        r = console.get("/auth/callback", params=answer, follow_redirects=False)
        assert r.status_code == 400 and "nonce" in r.text, nonce
        assert not session(console).get("sub") and session(console)["pending"] == []


def test_the_code_is_traded_only_with_the_verifier_of_its_own_attempt(console, provider):
    first, second = start(console), start(console)
    answer = provider.sign_in(first)
    # the provider saw the first challenge: answering as if to the second attempt uses the wrong verifier
    provider.codes[answer["code"]]["challenge"] = dict(parse_qsl(urlsplit(second).query))["code_challenge"]
    r = console.get("/auth/callback", params=answer, follow_redirects=False)
    assert r.status_code == 400 and "授权码" in r.text and not session(console).get("sub")
    assert provider.token_requests[-1]["grant_type"] == "authorization_code"


def test_an_id_token_signed_by_another_key_or_for_another_client_is_refused(console, provider):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    url = start(console)
    answer = provider.sign_in(url)
    grant = provider.codes[answer["code"]]
    nonce = dict(parse_qsl(urlsplit(url).query))["nonce"]
    grant["id_token"] = provider.id_token({**WORKER, "nonce": nonce}, key=stranger)
    assert console.get("/auth/callback", params=answer, follow_redirects=False).status_code == 400
    url = start(console)
    answer = provider.sign_in(url, aud="another-client", azp="another-client")
    r = console.get("/auth/callback", params=answer, follow_redirects=False)
    assert r.status_code == 400 and not session(console).get("sub")


def test_the_providers_refusal_and_an_account_without_a_role_are_readable(console, provider):
    answer = provider.sign_in(start(console))
    r = console.get("/auth/callback", params={"state": answer["state"], "error": "access_denied"})
    assert r.status_code == 400 and "统一身份认证未完成登录" in r.text and 'href="/signin"' in r.text
    answer = provider.sign_in(start(console), person={"preferred_username": "nobody", "groups": ["staff"]})
    r = console.get("/auth/callback", params=answer)
    assert r.status_code == 403 and "没有本平台的工作角色" in r.text and not session(console).get("sub")


def test_an_expiring_token_is_refreshed_and_an_unrenewable_one_signs_out(console, provider):
    provider.expires_in = 30  # within the console's refresh margin (60 s) from the start
    console.get("/auth/callback", params=provider.sign_in(start(console)))
    first = session(console)
    console.get("/")
    renewed = session(console)
    assert renewed["token"] != first["token"] and renewed["refresh_token"] != first["refresh_token"]
    assert renewed["sub"] == first["sub"] and provider.token_requests[-1]["grant_type"] == "refresh_token"
    provider.refresh_tokens.clear()  # the provider revoked it
    r = console.get("/work", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=/work")
    assert not session(console).get("sub")
    assert "登录已过期" in console.get("/signin").text


def test_sign_out_clears_the_session_and_uses_the_providers_logout_when_it_has_one(provider):
    for end_session, where in ((False, "/"), (True, f"{provider.issuer}/logout?")):
        provider.end_session = end_session
        with TestClient(build_app(settings_for(provider)), base_url=PUBLIC_URL) as c:
            c.get("/auth/callback", params=provider.sign_in(start(c)))
            assert session(c)["sub"]
            r = c.post("/signout", data={"csrf": session(c)["csrf"]}, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith(where)
            if end_session:
                q = dict(parse_qsl(urlsplit(r.headers["location"]).query))
                assert q == {"client_id": CLIENT, "post_logout_redirect_uri": f"{PUBLIC_URL}/"}
            s = session(c)
            assert not s.get("sub") and not s.get("token") and not s.get("refresh_token")


def test_outside_development_the_provider_is_the_only_sign_in(provider, monkeypatch):
    monkeypatch.setenv("CIVICGRID_ENV", "production")
    monkeypatch.setenv("CONSOLE_SESSION_SECRET", "s" * 40)
    monkeypatch.setenv("CIVICGRID_AUTH_SECRET", "a" * 40)
    with TestClient(build_app(settings_for(provider)), base_url=PUBLIC_URL) as c:
        page = c.get("/signin").text
        assert 'href="/auth/login' in page and 'action="/signin"' not in page
        r = c.post("/signin", data={"csrf": session(c)["csrf"], "sub": "admin", "role": "admin"})
        assert r.status_code == 404 and not session(c).get("sub")
        assert c.get("/auth/callback", params=provider.sign_in(start(c)), follow_redirects=False).status_code == 303


def test_in_development_both_are_offered(console):
    page = console.get("/signin?next=/work").text
    assert 'href="/auth/login?next=/work"' in page or 'href="/auth/login?next=%2Fwork"' in page
    assert 'action="/signin"' in page
