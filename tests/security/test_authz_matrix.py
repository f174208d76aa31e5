"""Every route of every service against the authorization matrix (authz_matrix.py), on the running
services: each role (district-wide), no token and six kinds of bad token, and for the area-scoped
roles a token scoped to the request's own area (let in) and to another area (403)."""

from __future__ import annotations

import base64
import json
import time

import httpx
import jwt
import pytest
from starlette.routing import Mount

from civicgrid_runtime.auth import ISSUER, mint_token
from civicgrid_runtime.settings import DEV_AUTH_SECRET
from tests.security.authz_matrix import MATRIX, ROLES, Rule
from tests.support.platform import daytime_visit

HTTP = httpx.Client(timeout=60)  # the shared machine can be slow; nothing here measures time
FOREIGN_AREA = "119999"  # no demo area starts with this
SUB = "security-test"


# ----------------------------------------------------------------------------- the routes that exist

def _walk(routes):
    for r in routes:
        if hasattr(r, "effective_candidates"):  # FastAPI's included router
            yield from _walk(r.effective_candidates())
        elif isinstance(r, Mount):
            yield f"MOUNT {r.path}"
        else:
            yield from (f"{m} {r.path}" for m in sorted((r.methods or set()) - {"HEAD"}))


def routes_of(svc: str) -> set[str]:
    """Every route the service's app serves, built in-process (nothing is started)."""
    if svc == "intake":
        from civicgrid_intake.entrypoints.http import build_app
        from civicgrid_intake.settings import IntakeSettings as S
    elif svc == "grid":
        from civicgrid_grid.entrypoints.http import build_app
        from civicgrid_grid.settings import GridSettings as S
    elif svc == "matching":
        from civicgrid_matching.entrypoints.http import build_app
        from civicgrid_matching.settings import MatchingSettings as S
    else:
        from civicgrid_audit.entrypoints.app import build_app
        from civicgrid_audit.settings import AuditSettings as S
    return set(_walk(build_app(S()).routes))


@pytest.mark.parametrize("svc", list(MATRIX))
def test_the_matrix_lists_every_route_and_no_other(svc):
    served, listed = routes_of(svc), set(MATRIX[svc])
    assert not served - listed, f"{svc} serves routes the authorization matrix does not list: {served - listed}"
    assert not listed - served, f"the matrix lists routes {svc} does not serve: {listed - served}"


# ----------------------------------------------------------------------------- tokens

def token(role: str, *, area: str = "", sub: str = SUB) -> str:
    return mint_token(secret=DEV_AUTH_SECRET, sub=sub, role=role, area=area)


def _unsigned(claims: dict) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc(claims)}."


def bad_tokens() -> dict[str, str]:
    now = int(time.time())
    admin = {"sub": SUB, "role": "admin", "area": "", "iat": now, "exp": now + 600, "iss": ISSUER}
    return {
        "malformed": "not.a.jwt",
        "expired": mint_token(secret=DEV_AUTH_SECRET, sub=SUB, role="admin", ttl_seconds=-120),
        "another key": mint_token(secret="another-secret-that-is-long-enough-for-hs256", sub=SUB, role="admin"),
        "alg none": _unsigned(admin),
        "another issuer": jwt.encode({**admin, "iss": "https://idp.elsewhere.example"}, DEV_AUTH_SECRET,
                                     algorithm="HS256"),
        "unknown role": jwt.encode({**admin, "role": "mayor"}, DEV_AUTH_SECRET, algorithm="HS256"),
    }


# ----------------------------------------------------------------------------- a real request to reach

def _wait(fn, what: str, timeout: float = 300):  # the events pass through the shared broker
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def subject(platform) -> dict[str, str]:
    """A request in a demo grid, assigned and dispatched to a department."""
    admin = {"Authorization": f"Bearer {token('admin')}"}
    b = HTTP.get(f"{platform.url('grid')}/v1/map/buildings", params={"limit": 1, "seed": 5}).json()["buildings"][0]
    r = HTTP.post(f"{platform.url('intake')}/api/v1/requests", json={
        "service_code": "public_facility", "location": {"building_id": b["building_id"]},
        "description": "Authorization matrix: a broken bench", "attributes": {"facility": "bench"},
        "channel": "app", "preferred_time": daytime_visit(),
        "contact": {"name": "Matrix Tester", "phone": "13800000000"}})
    assert r.status_code == 201, r.text
    rid = r.json()["request_id"]
    grid_doc = _wait(lambda: (lambda g: g.json() if g.status_code == 200 and g.json().get("assignee_id") else None)(
        HTTP.get(f"{platform.url('grid')}/v1/requests/{rid}", headers=admin)), "grid to assign the request")
    _wait(lambda: HTTP.get(f"{platform.url('intake')}/api/v1/requests/{rid}", headers=admin).json()["status"]
          != "received", "intake to learn the assignment")
    department = HTTP.get(f"{platform.url('grid')}/v1/departments").json()[0]["_id"]
    w = HTTP.post(f"{platform.url('grid')}/v1/requests/{rid}/whistle", headers=admin,
                   json={"departments": [department], "reason": "authorization matrix"})
    assert w.status_code == 200, w.text
    dispatch = next(iter(w.json()["dispatches"]))
    return {"rid": rid, "area": grid_doc["area"]["grid"], "staff": grid_doc["assignee_id"],
            "department": department, "dispatch": dispatch,
            **volunteers_of(platform, admin, rid, grid_doc["area"]["community"])}


def volunteers_of(platform, admin: dict, rid: str, community: str) -> dict[str, str]:
    """What matching's area-scoped routes reach: a volunteer living in the request's community and
    the request's match (volunteers asked for; the service has no volunteers, so it stays unmatched)."""
    vid = "authz-matrix-volunteer"
    home = {"name": "Matrix Volunteer", "community": community, "lat": 39.9, "lon": 116.3, "on_duty": False}
    r = HTTP.post(f"{platform.url('matching')}/volunteers", headers=admin, json={"id": vid, **home})
    if r.status_code == 409:  # registered by an earlier run on this store: placed here now
        r = HTTP.patch(f"{platform.url('matching')}/volunteers/{vid}", headers=admin, json=home)
    assert r.status_code in (200, 201), r.text
    a = HTTP.post(f"{platform.url('grid')}/v1/requests/{rid}/volunteers", headers=admin,
                  json={"needed_from": daytime_visit(), "needed_hours": 1})
    assert a.status_code == 200, a.text
    _wait(lambda: HTTP.get(f"{platform.url('matching')}/matches/{rid}", headers=admin).status_code == 200,
          "matching to open the request's match")
    return {"community": community, "volunteer": vid}


# ----------------------------------------------------------------------------- calling a route

def _fill(text: str, subject: dict[str, str]) -> str:
    for k, v in subject.items():
        text = text.replace("{" + k + "}", v)
    return text


def _filled(body, subject: dict[str, str]):
    """A JSON body with the placeholders in its strings filled."""
    if isinstance(body, dict):
        return {k: _filled(v, subject) for k, v in body.items()}
    return _fill(body, subject) if isinstance(body, str) else body


def call(platform, svc: str, route: str, rule: Rule, subject: dict, auth: str | None) -> httpx.Response:
    method, path = route.split(" ", 1)
    url = platform.url(svc) + _fill(rule.path or path, subject)
    params = {k: _fill(v, subject) for k, v in rule.query.items()}
    headers = {"Authorization": f"Bearer {auth}"} if auth is not None else {}
    if method == "MOUNT":
        method = "GET"
    kw = {}
    if method in ("POST", "PUT", "PATCH"):
        kw = {"data": rule.form} if rule.form is not None else {"json": _filled(rule.body or {}, subject)}
    return HTTP.request(method, url, params=params, headers=headers, **kw)


def _subject_of(role: str, subject: dict, *, foreign: bool = False) -> str:
    """A department reaches the requests dispatched to it: its token's subject is the department."""
    if role == "department":
        return "another-department" if foreign else subject["department"]
    return SUB


def _cases():
    for svc, routes in MATRIX.items():
        for route, rule in routes.items():
            yield pytest.param(svc, route, rule, id=f"{svc}:{route}")


@pytest.mark.parametrize(("svc", "route", "rule"), list(_cases()))
def test_route_lets_in_exactly_whom_the_matrix_says(platform, subject, svc, route, rule):
    if rule.after_audit:  # the area is known once audit has folded the request's events
        admin = {"Authorization": f"Bearer {token('admin')}"}
        _wait(lambda: HTTP.get(f"{platform.url('audit')}/requests/{subject['rid']}/timeline",
                                headers=admin).status_code == 200, "audit to see the request")
    wrong = []

    def expect(who: str, r: httpx.Response, allowed: bool, refused=rule.refused) -> None:
        if allowed and r.status_code in (401, 403):
            wrong.append(f"{who}: refused with {r.status_code} but the matrix lets it in: {r.text[:200]}")
        elif not allowed and r.status_code not in refused:
            wrong.append(f"{who}: got {r.status_code}, expected one of {refused}: {r.text[:200]}")
        if r.status_code >= 500:
            wrong.append(f"{who}: server error {r.status_code}: {r.text[:200]}")

    expect("no token", call(platform, svc, route, rule, subject, None), None in rule.allowed,
           refused=(401,) if rule.refused == (401, 403) else rule.refused)
    for role in ROLES:  # district-wide tokens of every role
        r = call(platform, svc, route, rule, subject, token(role, sub=_subject_of(role, subject)))
        expect(role, r, role in rule.allowed)
    if None not in rule.allowed:
        for kind, bad in bad_tokens().items():
            expect(f"{kind} token", call(platform, svc, route, rule, subject, bad), False, refused=(401,))
    for role in sorted(rule.scoped):
        foreign = token(role, area=FOREIGN_AREA, sub=_subject_of(role, subject, foreign=True))
        expect(f"{role} scoped elsewhere", call(platform, svc, route, rule, subject, foreign), False, refused=(403,))
        own = token(role, area=subject["area"], sub=_subject_of(role, subject))
        expect(f"{role} scoped to the request's area", call(platform, svc, route, rule, subject, own),
               not rule.district_only, refused=(403,))
    assert not wrong, f"{svc} {route}:\n" + "\n".join(wrong)
