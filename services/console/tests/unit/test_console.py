"""Fast tests of the console's own rules: both languages for every message, the queue's order and
time left, the session cookie, the report body, and the pages' safety (CSRF, CSP, cookie flags,
readable errors) through the app with no service behind it."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import ImmutableMultiDict

from civicgrid_console.adapters.session_cookie import SessionCodec
from civicgrid_console.bootstrap import bootstrap
from civicgrid_console.domain import i18n
from civicgrid_console.domain.forms import FormInvalid, submission
from civicgrid_console.domain.work import grid_colours, group_catalogue, queue_rows
from civicgrid_console.entrypoints.http import build_app
from civicgrid_console.settings import ConsoleSettings

PKG = Path(__file__).resolve().parents[2] / "src" / "civicgrid_console"
NOW = datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)


def test_every_message_key_used_exists_in_both_languages():
    used = set()
    for path in [*PKG.rglob("*.html"), *PKG.rglob("*.py")]:
        used |= set(re.findall(r"""\bt\(\s*['"]([a-z_]+\.[a-z_0-9.]+)['"]""", path.read_text()))
        used |= set(re.findall(r"""i18n\.t\([a-z_.]+, ['"]([a-z_]+\.[a-z_0-9.]+)['"]""", path.read_text()))
    missing = sorted(k for k in used if k not in i18n.M)
    assert not missing, missing
    for key, (zh, en) in i18n.M.items():
        assert zh and en, key
        assert set(re.findall(r"{(\w+)}", zh)) == set(re.findall(r"{(\w+)}", en)), key


def test_dates_are_shown_in_the_office_time_zone():
    from zoneinfo import ZoneInfo

    assert i18n.local_time("2026-12-02T08:30:00Z", ZoneInfo("Asia/Shanghai")) == "2026-12-02 16:30"
    assert i18n.duration("zh", 3 * 3600 + 120) == "3小时2分"
    assert i18n.duration("en", -90 * 60) == "1 h 30 min"


def test_queue_is_in_deadline_order_with_time_left():
    items = [
        {"request_id": "r-later", "status": "accepted", "due_resolution": (NOW + timedelta(hours=5)).isoformat()},
        {"request_id": "r-none", "status": "accepted"},
        {"request_id": "r-late", "status": "assigned", "due_response": (NOW - timedelta(minutes=30)).isoformat(),
         "due_resolution": (NOW + timedelta(hours=20)).isoformat()},
        {"request_id": "r-soon", "status": "reopened", "due_response": (NOW + timedelta(hours=1)).isoformat()},
    ]
    rows = queue_rows(items, NOW)
    assert [r.request_id for r in rows] == ["r-late", "r-soon", "r-later", "r-none"]
    assert rows[0].overdue and rows[0].deadline_kind == "response" and rows[0].seconds_left == -1800
    assert rows[2].deadline_kind == "resolution" and not rows[2].overdue


def test_catalogue_is_grouped_and_searched_in_both_languages():
    services = [{"code": "sanitation", "name_zh": "环境卫生", "name_en": "Sanitation", "group": "environment",
                 "keywords": ["垃圾"]},
                {"code": "public_facility", "name_zh": "公共设施维修", "name_en": "Public facility repair",
                 "group": "facilities", "keywords": ["路灯"]},
                {"code": "old", "name_zh": "旧", "name_en": "Old", "group": "x", "active": False}]
    assert list(group_catalogue(services)) == ["environment", "facilities"]
    assert list(group_catalogue(services, "路灯")) == ["facilities"]
    assert list(group_catalogue(services, "SANITATION")) == ["environment"]
    traditional = [{"code": "sanitation", "name_zh": "環境衛生", "name_en": "Sanitation", "group": "environment"}]
    assert list(group_catalogue(traditional, "环境")) == ["environment"], "Simplified finds Traditional"
    assert i18n.simplified("鄰里糾紛") == "邻里纠纷"


def test_grids_are_coloured_overdue_over_open():
    state = grid_colours({"110105001001001", "110105001001002", "110105001001003"},
                         [{"area_code": "110105001001001"}], {"110105001001001": 2, "110105001001002": 1})
    assert state["110105001001001"] == {"overdue": 1, "open": 2, "state": "overdue"}
    assert state["110105001001002"]["state"] == "open"
    assert state["110105001001003"]["state"] == "clear"


def test_session_cookie_is_sealed_and_refuses_tampering_and_other_keys():
    codec = SessionCodec("k1", max_age_seconds=60)
    sealed = codec.seal({"token": "secret-bearer"})
    assert "secret-bearer" not in sealed
    assert codec.open(sealed) == {"token": "secret-bearer"}
    assert codec.open(sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")) is None
    assert SessionCodec("k2", max_age_seconds=60).open(sealed) is None
    assert SessionCodec("k1", max_age_seconds=-1).open(SessionCodec("k1", max_age_seconds=-1).seal({})) is None


def test_report_form_becomes_intake_body():
    svc = {"code": "sanitation", "attributes": [{"code": "waste_type", "datatype": "singlevaluelist"},
                                                {"code": "kinds", "datatype": "multivaluelist"}]}
    form = ImmutableMultiDict([("lat", "39.9"), ("lon", "116.4"), ("attr_waste_type", "household"),
                               ("attr_kinds", "a"), ("attr_kinds", "b"), ("description", " piled up "),
                               ("phone", "13800138000")])
    body = submission(svc, form)
    assert body["location"] == {"lat": 39.9, "lon": 116.4}
    assert body["attributes"] == {"waste_type": "household", "kinds": ["a", "b"]}
    assert body["description"] == "piled up" and body["contact"] == {"phone": "13800138000"}
    assert submission(svc, ImmutableMultiDict([("address", "3 Main St")]))["location"] == {"address_text": "3 Main St"}
    with pytest.raises(FormInvalid):
        submission(svc, ImmutableMultiDict([("description", "somewhere")]))


def test_production_refuses_built_in_secrets(monkeypatch):
    for name in ("CIVICGRID_OIDC_ISSUER", "CONSOLE_PUBLIC_URL"):  # `make test` names its local provider
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CIVICGRID_ENV", "production")
    with pytest.raises(ValueError, match="CONSOLE_SESSION_SECRET"):
        ConsoleSettings()
    monkeypatch.setenv("CONSOLE_SESSION_SECRET", "s" * 40)
    monkeypatch.setenv("CIVICGRID_AUTH_SECRET", "a" * 40)
    # outside development the identity provider is the only sign-in: the console must know it
    with pytest.raises(ValueError, match="CIVICGRID_OIDC_ISSUER, CONSOLE_PUBLIC_URL"):
        ConsoleSettings()
    monkeypatch.setenv("CIVICGRID_OIDC_ISSUER", "https://id.city.example")
    monkeypatch.setenv("CONSOLE_PUBLIC_URL", "https://console.city.example")
    settings = ConsoleSettings()
    assert not settings.development and settings.redirect_uri == "https://console.city.example/auth/callback"
    assert bootstrap(settings).dev_sign_in is None, "no development sign-in outside development"
    with TestClient(build_app(settings), base_url="https://console.city.example") as c:
        assert "secure" in c.get("/").headers["set-cookie"].lower(), "served over https: a Secure cookie"
    monkeypatch.setenv("CONSOLE_PUBLIC_URL", "http://console.city.example")
    with pytest.raises(ValueError, match="https://"):
        ConsoleSettings()


@pytest.fixture
def client():
    # nothing listens on these ports: pages that need a service show its absence as a message
    settings = ConsoleSettings(intake_url="http://127.0.0.1:9", grid_url="http://127.0.0.1:9",
                               matching_url="http://127.0.0.1:9", audit_url="http://127.0.0.1:9",
                               api_timeout_seconds=1)
    with TestClient(build_app(settings)) as c:
        yield c


def test_pages_carry_a_strict_csp_and_a_safe_session_cookie(client):
    r = client.get("/")
    assert r.status_code == 200 and '<html lang="zh-CN">' in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "style-src 'self';" in csp and "unsafe-inline" not in csp
    cookie = r.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert "<script>" not in r.text and "style=" not in r.text


def test_forms_without_the_csrf_token_are_refused(client):
    r = client.post("/lang", data={"lang": "en", "next": "/"})
    assert r.status_code == 403 and "表单已过期" in r.text
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)
    r = client.post("/lang", data={"lang": "en", "next": "/", "csrf": token}, follow_redirects=True)
    assert r.status_code == 200 and '<html lang="en">' in r.text and "Report a problem" in r.text


def test_a_service_down_is_a_readable_message_not_a_trace(client):
    r = client.get("/report")
    assert r.status_code == 503
    assert "intake 服务暂时无法访问" in r.text and "Traceback" not in r.text and "{" not in r.text.split("<main")[1]


def test_staff_pages_need_sign_in(client):
    r = client.get("/work", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=/work")


def test_development_sign_in_mints_a_token_and_never_redirects_off_site(client):
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)
    r = client.post("/signin", data={"csrf": token, "sub": "auditor-1", "role": "auditor", "area": "",
                                     "label": "Auditor", "next": "//evil.example/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/audit"
    r = client.post("/signin", data={"csrf": token, "sub": "x", "role": "emperor", "area": ""})
    assert r.status_code == 403  # the session's CSRF token changed at sign-in: the old form is refused


def test_htmx_requests_send_the_csrf_token_as_a_header(client):
    page = client.get("/").text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert f'hx-headers=\'{{"X-CSRF-Token": "{token}"}}\'' in page
    r = client.post("/lang", data={"lang": "en", "next": "/"}, headers={"X-CSRF-Token": token},
                    follow_redirects=False)
    assert r.status_code == 303


def test_a_supervisors_default_kpis_are_those_of_their_own_area():
    from civicgrid_console.handlers.supervisor import own_dimension

    assert own_dimension("110105") == "district"  # audit refuses 'all' to any area scope
    assert own_dimension("110105001") == "street"
    assert own_dimension("110105001002") == "community"
    assert own_dimension("110105001002003") == "grid"
    assert own_dimension("") == "all"
