"""Abuse limits on intake's public endpoints, with two intake replicas (separate processes on the
real broker and store) sharing one limit: a per-process limit would let twice as much through."""

from __future__ import annotations

import random
import subprocess
import time

import httpx
import pytest

from tests.support.platform import BIN, ROOT, Platform, running

LIMIT = 4
WINDOW = 86400  # one window for the whole test: see _clear_of_window_end


def _clear_of_window_end(margin: float = 120) -> None:
    """The counts reset when a window ends (midnight UTC here); start well clear of that moment."""
    left = WINDOW - time.time() % WINDOW
    if left < margin:
        time.sleep(left + 1)


@pytest.fixture(scope="module")
def replicas(infra):
    p = Platform(infra.kafka, infra.mongodb, extra_env={
        "INTAKE_RATE_LIMIT_WINDOW_SECONDS": str(WINDOW), "INTAKE_RATE_LIMIT_SUBMISSIONS": str(LIMIT),
        "INTAKE_RATE_LIMIT_READS": str(LIMIT)})
    with running(p, "intake"):  # load-demo: the catalogue and the development Open311 key
        second = p.add_replica("intake")
        yield p, p.services["intake"], second


def _body() -> dict:
    lat, lon = 39.9087 + random.uniform(-0.2, 0.2), 116.3975 + random.uniform(-0.2, 0.2)
    return {"service_code": "public_facility", "location": {"lat": lat, "lon": lon},
            "description": "Street light broken", "attributes": {"facility": "streetlight"}, "channel": "app"}


def _form(api_key: str) -> dict:
    lat, lon = 39.9087 + random.uniform(-0.2, 0.2), 116.3975 + random.uniform(-0.2, 0.2)
    return {"api_key": api_key, "service_code": "public_facility", "lat": str(lat), "long": str(lon),
            "description": "Bench broken", "attribute[facility]": "bench"}


def _mint_key(p: Platform) -> str:
    out = subprocess.run([str(BIN / "civicgrid-intake"), "mint-api-key", "--name", "second client"], cwd=ROOT,
                         env=p.services["intake"].env, capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_native_submissions_share_one_limit_across_two_replicas(replicas):
    _, first, second = replicas
    _clear_of_window_end()
    codes = [httpx.post(f"{(first, second)[i % 2].url}/api/v1/requests", json=_body(), timeout=30).status_code
             for i in range(LIMIT)]
    assert codes == [201] * LIMIT
    for sp in (first, second):  # each replica alone has seen only half the limit, and still refuses
        r = httpx.post(f"{sp.url}/api/v1/requests", json=_body(), timeout=30)
        assert r.status_code == 429, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == "/problems/rate-limited" and r.json()["status"] == 429
        assert 1 <= int(r.headers["retry-after"]) <= WINDOW


def test_open311_posts_are_limited_per_api_key_across_two_replicas(replicas):
    p, first, second = replicas
    _clear_of_window_end()
    key = "civicgrid-dev-open311-key"
    codes = [httpx.post(f"{(first, second)[i % 2].url}/open311/v2/requests.json", data=_form(key),
                        timeout=30).status_code for i in range(LIMIT)]
    assert codes == [201] * LIMIT
    for sp in (first, second):
        r = httpx.post(f"{sp.url}/open311/v2/requests.json", data=_form(key), timeout=30)
        assert r.status_code == 429, r.text
        assert r.json()[0]["code"] == 429 and int(r.headers["retry-after"]) >= 1  # Open311's error list
    r = httpx.post(f"{second.url}/open311/v2/requests.xml", data=_form(key), timeout=30)
    assert r.status_code == 429 and "<code>429</code>" in r.text
    other = _mint_key(p)  # another client has a limit of its own
    r = httpx.post(f"{first.url}/open311/v2/requests.json", data=_form(other), timeout=30)
    assert r.status_code == 201, r.text


def test_public_status_reads_share_one_limit_across_two_replicas(replicas):
    _, first, second = replicas
    _clear_of_window_end()
    codes = [httpx.get(f"{(first, second)[i % 2].url}/open311/v2/tokens/no-such-token.json", timeout=30).status_code
             for i in range(LIMIT)]
    assert codes == [404] * LIMIT  # counted whatever the answer: guessing tokens is what the limit stops
    r = httpx.get(f"{second.url}/api/v1/requests/cg-nope", params={"token": "guess"}, timeout=30)
    assert r.status_code == 429 and r.headers["retry-after"]
