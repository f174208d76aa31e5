"""Access tokens from an OpenID Connect issuer, against a tiny provider of our own on loopback.

The provider serves a discovery document and a JWKS made of keys generated here, so a test can
rotate keys, sign with a key the issuer never published, and count how often the key set is
fetched. The real provider (Dex) is exercised end to end in tests/e2e/test_oidc_sign_in.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends, FastAPI

from civicgrid_runtime.auth import Principal, TokenVerifier, mint_token, require
from civicgrid_runtime.oidc import OidcVerifier
from civicgrid_runtime.problems import install_problem_handlers
from civicgrid_runtime.settings import OidcSettings

DEV_SECRET = "test-secret-that-is-long-enough-for-hs256!"


@dataclass
class LocalIssuer:
    """Discovery + JWKS on 127.0.0.1; ``keys`` are (kid, private key) pairs, the published set."""

    server: ThreadingHTTPServer
    keys: list[tuple[str, object]] = field(default_factory=list)
    jwks_fetches: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/issuer"

    def add_key(self, kid: str, kind: str = "rsa") -> object:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" \
            else ec.generate_private_key(ec.SECP256R1())
        self.keys.append((kid, key))
        return key

    def jwks(self) -> dict:
        out = []
        for kid, key in self.keys:
            alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
            jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
            out.append({**jwk, "kid": kid, "use": "sig", "alg": alg})
        return {"keys": out}

    def token(self, kid: str, *, key: object | None = None, alg: str | None = None, **claims) -> str:
        signing = key or dict(self.keys)[kid]
        alg = alg or ("RS256" if isinstance(signing, rsa.RSAPrivateKey) else "ES256")
        now = int(time.time())
        body = {"iss": self.url, "aud": "civicgrid", "sub": "opaque-1", "iat": now, "exp": now + 300,
                "preferred_username": "c110105001001", "groups": ["civicgrid-role:supervisor",
                                                                 "civicgrid-area:110105001001", "staff"]}
        body.update(claims)
        return jwt.encode({k: v for k, v in body.items() if v is not None}, signing, algorithm=alg,
                          headers={"kid": kid})


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    holder: dict[str, LocalIssuer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            iss = holder["issuer"]
            if self.path == "/issuer/.well-known/openid-configuration":
                body = {"issuer": iss.url, "jwks_uri": f"{iss.url}/keys", "token_endpoint": f"{iss.url}/token"}
            elif self.path == "/issuer/keys":
                iss.jwks_fetches += 1
                body = iss.jwks()
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["issuer"] = LocalIssuer(server)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield holder["issuer"]
    finally:
        server.shutdown()
        server.server_close()


def settings_for(issuer: LocalIssuer, **overrides) -> OidcSettings:
    return OidcSettings(issuer=issuer.url, audience="civicgrid", subject_claim="preferred_username",
                        jwks_min_refetch_seconds=1, **overrides)


def app_with(verifier: TokenVerifier) -> FastAPI:
    app = FastAPI()
    app.state.token_verifier, app.state.auth_secret = verifier, DEV_SECRET
    install_problem_handlers(app)

    @app.get("/staff-only")
    def staff_only(p: Principal = Depends(require("supervisor", "auditor"))):
        return {"sub": p.sub, "role": p.role, "area": p.area}

    return app


async def call(app: FastAPI, token: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return await c.get("/staff-only", headers={"Authorization": f"Bearer {token}"})


async def test_issuer_tokens_reach_the_endpoint_with_role_and_area_from_groups_or_claims(issuer):
    issuer.add_key("k1")
    issuer.add_key("e1", "ec")
    app = app_with(TokenVerifier(development=False, oidc=OidcVerifier(settings_for(issuer))))
    r = await call(app, issuer.token("k1"))
    assert r.status_code == 200, r.text
    assert r.json() == {"sub": "c110105001001", "role": "supervisor", "area": "110105001001"}
    r = await call(app, issuer.token("e1", groups=None, civicgrid_role="auditor", area=""))  # ES256, claims
    assert r.status_code == 200 and r.json()["role"] == "auditor" and r.json()["area"] == ""
    r = await call(app, issuer.token("k1", groups=["civicgrid-role:volunteer"]))
    assert r.status_code == 403
    assert issuer.jwks_fetches == 1  # the key set is cached


@pytest.mark.parametrize("claims, why", [
    ({"iss": "http://127.0.0.1:1/another"}, "issuer"),
    ({"aud": "another-api"}, "Audience"),
    ({"exp": -120}, "expired"),  # relative to the moment the test runs (see below)
    ({"nbf": +600}, "not yet valid"),
    ({"exp": None}, "exp"),
    ({"groups": ["civicgrid-role:resident"]}, "not a staff role"),
    ({"groups": ["civicgrid-role:wizard"]}, "not a staff role"),
    ({"groups": ["civicgrid-role:supervisor", "civicgrid-role:admin"]}, "more than one role"),
    ({"groups": ["civicgrid-role:grid_worker"]}, "must name an area"),
    ({"preferred_username": None}, "preferred_username"),
])
async def test_tokens_that_break_a_rule_are_refused_with_401(issuer, claims, why):
    issuer.add_key("k1")
    app = app_with(TokenVerifier(development=False, oidc=OidcVerifier(settings_for(issuer))))
    # times are offsets from now, taken when the test runs: a suite collected ten minutes earlier
    # would otherwise hand it a "not yet valid" token that has become valid
    claims = {k: int(time.time()) + v if k in ("exp", "nbf") and v is not None else v for k, v in claims.items()}
    r = await call(app, issuer.token("k1", **claims))
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert why in r.json()["detail"], r.json()


async def test_clock_skew_is_bounded(issuer):
    issuer.add_key("k1")
    app = app_with(TokenVerifier(development=False, oidc=OidcVerifier(settings_for(issuer, leeway_seconds=30))))
    assert (await call(app, issuer.token("k1", exp=int(time.time()) - 10))).status_code == 200
    assert (await call(app, issuer.token("k1", exp=int(time.time()) - 60))).status_code == 401
    with pytest.raises(ValueError, match="leeway_seconds"):
        settings_for(issuer, leeway_seconds=3600)


async def test_a_rotated_key_is_picked_up_and_unknown_kids_cannot_flood_the_provider(issuer):
    issuer.add_key("k1")
    app = app_with(TokenVerifier(development=False, oidc=OidcVerifier(settings_for(issuer))))
    assert (await call(app, issuer.token("k1"))).status_code == 200
    time.sleep(1.1)  # past jwks_min_refetch_seconds
    issuer.add_key("k2")  # the provider rotates: a new kid appears in its JWKS
    assert (await call(app, issuer.token("k2"))).status_code == 200
    assert issuer.jwks_fetches == 2
    # a stranger's key with made-up kids: refused, and at most one fetch per refetch interval
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for i in range(20):
        r = await call(app, issuer.token(f"forged-{i}", key=stranger))
        assert r.status_code == 401 and "no key of the issuer" in r.json()["detail"]
    assert issuer.jwks_fetches <= 3


async def test_a_key_the_issuer_never_published_under_a_known_kid_is_refused(issuer):
    issuer.add_key("k1")
    app = app_with(TokenVerifier(development=False, oidc=OidcVerifier(settings_for(issuer))))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    r = await call(app, issuer.token("k1", key=stranger))
    assert r.status_code == 401 and "Signature" in r.json()["detail"]


async def test_hs256_and_none_are_refused_when_an_issuer_is_configured_outside_development(issuer):
    public_pem = issuer.add_key("k1").public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    app = app_with(TokenVerifier(development=False, oidc=OidcVerifier(settings_for(issuer))))
    dev = mint_token(secret=DEV_SECRET, sub="x", role="admin")
    r = await call(app, dev)
    assert r.status_code == 401 and "CIVICGRID_ENV=development" in r.json()["detail"]
    # the classic confusion: HS256 "signed" with the issuer's public key as the shared secret
    now = int(time.time())
    confused = _hs256({"alg": "HS256", "typ": "JWT", "kid": "k1"},
                      {"iss": issuer.url, "aud": "civicgrid", "preferred_username": "x", "iat": now,
                       "exp": now + 60, "groups": ["civicgrid-role:admin"]}, public_pem)
    assert (await call(app, confused)).status_code == 401
    unsigned = jwt.encode({"iss": issuer.url, "aud": "civicgrid", "preferred_username": "x",
                           "groups": ["civicgrid-role:admin"], "exp": now + 60, "iat": now}, None, algorithm="none")
    r = await call(app, unsigned)
    assert r.status_code == 401 and "'none' is not accepted" in r.json()["detail"]


def _hs256(header: dict, claims: dict, key: bytes) -> str:
    """By hand: PyJWT itself refuses a PEM key as an HMAC secret; an attacker's tool need not."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


async def test_development_tokens_work_only_in_development_mode(issuer):
    issuer.add_key("k1")
    dev = mint_token(secret=DEV_SECRET, sub="sup", role="supervisor", area="110105")
    oidc = OidcVerifier(settings_for(issuer))
    assert (await call(app_with(TokenVerifier(development=True, oidc=oidc)), dev)).status_code == 200
    assert (await call(app_with(TokenVerifier(development=True, oidc=oidc)), issuer.token("k1"))).status_code == 200
    assert (await call(app_with(TokenVerifier(development=False, oidc=oidc)), dev)).status_code == 401
    r = await call(app_with(TokenVerifier(development=False)), dev)
    assert r.status_code == 401 and "development" in r.json()["detail"]
    r = await call(app_with(TokenVerifier(development=False)), issuer.token("k1"))
    assert r.status_code == 401 and "CIVICGRID_OIDC_ISSUER" in r.json()["detail"]


async def test_a_provider_that_cannot_be_reached_is_503_not_500():
    oidc = OidcVerifier(OidcSettings(issuer="http://127.0.0.1:9/nowhere", http_timeout_seconds=1))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"sub": "x"}, key, algorithm="RS256", headers={"kid": "k"})
    r = await call(app_with(TokenVerifier(development=False, oidc=oidc)), token)
    assert r.status_code == 503 and r.headers["retry-after"] == "5"


def test_settings_refuse_plain_http_issuers_off_loopback_and_other_algorithms():
    with pytest.raises(ValueError, match="https"):
        OidcSettings(issuer="http://idp.city.example/")
    with pytest.raises(ValueError, match="RS256, ES256"):
        OidcSettings(algorithms="RS256,HS256")
    assert OidcSettings(issuer="https://idp.city.example/realms/staff").issuer
