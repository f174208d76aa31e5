"""One request's trace, followed through Jaeger's query API from intake's HTTP span through grid,
matching and audit: the four services run as processes exporting spans over OTLP to a real Jaeger.

Jaeger is the one ``deploy/local/infra.py up`` started (``CIVICGRID_JAEGER_URL``), else one this
module starts on free loopback ports from the binary ``make setup`` built. Under ``CI=true`` a
missing Jaeger fails the test."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import eventually, grid_point
from tests.support.platform import ROOT, Platform, daytime_visit, free_port, running

pytestmark = [pytest.mark.infra]


def _infra_module():
    spec = importlib.util.spec_from_file_location("civicgrid_local_infra", ROOT / "deploy" / "local" / "infra.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _missing(why: str) -> None:
    # a real part that is missing fails the test, as the broker and the store do (conftest): never a skip
    pytest.fail(f"Jaeger is required and missing: {why}", pytrace=False)


def _api(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory):
    """(query API URL, OTLP endpoint) of a running Jaeger."""
    if os.environ.get("CIVICGRID_JAEGER_URL"):
        yield os.environ["CIVICGRID_JAEGER_URL"], os.environ["CIVICGRID_JAEGER_OTLP_ENDPOINT"]
        return
    infra = _infra_module()
    if not infra.JAEGER_BIN.exists():
        _missing(f"no Jaeger binary at {infra.JAEGER_BIN} (make setup builds it)")
    ports = {name: str(free_port()) for name in ("CIVICGRID_JAEGER_UI_PORT", "CIVICGRID_JAEGER_OTLP_PORT",
                                                 "CIVICGRID_JAEGER_QUERY_GRPC_PORT")}
    log = open(tmp_path_factory.mktemp("jaeger") / "jaeger.log", "wb")  # noqa: SIM115 - the child's output
    proc = subprocess.Popen([str(infra.JAEGER_BIN), f"--config={infra.JAEGER_DIR / 'config.yaml'}"],
                            env={**os.environ, **ports}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{ports['CIVICGRID_JAEGER_UI_PORT']}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _api(f"{url}/api/services")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Jaeger did not start: {Path(log.name).read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield url, f"http://127.0.0.1:{ports['CIVICGRID_JAEGER_OTLP_PORT']}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def traced_platform(infra, jaeger):
    # spans leave each process within half a second (the default batches for 5 s)
    p = Platform(infra.kafka, infra.mongodb, extra_env={"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger[1],
                                                         "OTEL_BSP_SCHEDULE_DELAY": "300"})
    with running(p):
        yield p


def _tags(span: dict) -> dict:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


async def test_one_request_is_one_trace_from_intakes_http_span_through_grid_matching_and_audit(
        traced_platform, jaeger):
    p, (jaeger_url, _) = traced_platform, jaeger
    async with httpx.AsyncClient(timeout=10) as client:
        point = await grid_point(client, p.url("grid"), index=7)
        r = await client.post(f"{p.url('intake')}/api/v1/requests", json={
            "service_code": "elderly_home_care", "preferred_time": daytime_visit(),
            "location": {"lat": point["lat"], "lon": point["lon"]}, "description": "Company for my father",
            "channel": "app", "attributes": {"care_type": ["company"], "resident_age": 80},
            "contact": {"name": "李华", "phone": "13900139000"}})
        assert r.status_code == 201, r.text
        rid = r.json()["request_id"]

    # as a person would: intake's HTTP span tagged with the request id (README, "Following one
    # request"). Not any span so tagged: on a broker shared with other platforms, another platform's
    # grid may handle this request too and publish the same events again, in traces of its own
    query = urllib.parse.urlencode({"service": "civicgrid-intake", "operation": "POST /api/v1/requests",
                                    "lookback": "1h", "limit": "20", "tags": json.dumps({"civicgrid.request_id": rid})})
    wanted = {"civicgrid-intake", "civicgrid-grid", "civicgrid-matching", "civicgrid-audit"}

    async def whole_trace():
        found = _api(f"{jaeger_url}/api/traces?{query}")["data"]
        if not found:  # say what intake's spans there are instead
            ops = _api(f"{jaeger_url}/api/services/civicgrid-intake/operations")["data"]
            raise AssertionError(f"no trace of intake's POST tagged {rid}; intake's operations: {ops}")
        assert len({t["traceID"] for t in found}) == 1, f"traces tagged {rid}: {[t['traceID'] for t in found]}"
        full = _api(f"{jaeger_url}/api/traces/{found[0]['traceID']}")["data"][0]
        services = {full["processes"][s["processID"]]["serviceName"] for s in full["spans"]}
        kinds = {(full["processes"][s["processID"]]["serviceName"], s["operationName"]) for s in full["spans"]}
        # matching has handled grid's volunteer request, and audit has recorded it
        done = (("civicgrid-matching", "process grid.assignments.v1") in kinds
                and ("civicgrid-audit", "process grid.assignments.v1") in kinds)
        assert wanted <= services and done, f"so far: {sorted(kinds)}"
        return full

    trace = await eventually(whole_trace, timeout=90, interval=1, what=f"one trace of {rid} across {sorted(wanted)}")
    spans = {s["spanID"]: s for s in trace["spans"]}
    service_of = {sid: trace["processes"][s["processID"]]["serviceName"] for sid, s in spans.items()}

    def parent(span: dict) -> str | None:
        refs = [ref["spanID"] for ref in span.get("references", []) if ref["refType"] == "CHILD_OF"]
        return refs[0] if refs else None

    roots = [s for s in spans.values() if parent(s) is None]
    assert len(roots) == 1, [(service_of[s["spanID"]], s["operationName"]) for s in roots]
    root = roots[0]
    assert service_of[root["spanID"]] == "civicgrid-intake"
    assert _tags(root).get("span.kind") == "server" and root["operationName"].startswith("POST /api/v1/requests")
    assert _tags(root)["civicgrid.request_id"] == rid

    def path(span: dict) -> list[str]:
        """Service and operation of each span from the root down to ``span``."""
        out = []
        while span is not None:
            out.append(f"{service_of[span['spanID']]}: {span['operationName']}")
            up = parent(span)
            span = spans.get(up) if up else None
        return out[::-1]

    # every span hangs from intake's HTTP span, hop by hop: publish -> process -> publish -> process
    matching = next(s for s in spans.values() if service_of[s["spanID"]] == "civicgrid-matching"
                    and s["operationName"] == "process grid.assignments.v1")
    assert path(matching) == [
        "civicgrid-intake: POST /api/v1/requests", "civicgrid-intake: publish intake.requests.v1",
        "civicgrid-grid: process intake.requests.v1", "civicgrid-grid: publish grid.assignments.v1",
        "civicgrid-matching: process grid.assignments.v1"], path(matching)
    audit = next(s for s in spans.values() if service_of[s["spanID"]] == "civicgrid-audit"
                 and s["operationName"] == "process grid.assignments.v1")
    assert path(audit) == path(matching)[:4] + ["civicgrid-audit: process grid.assignments.v1"], path(audit)
    # matching's offers, when this platform's matching made them (on a broker shared with other
    # platforms, another platform's grid may hand matching the same volunteer request first, in a
    # trace of its own: matching then ignores this one as already applied)
    for offer in (s for s in spans.values() if service_of[s["spanID"]] == "civicgrid-audit"
                  and s["operationName"] == "process matching.volunteers.v1"):
        assert path(offer)[:6] == path(matching) + ["civicgrid-matching: publish matching.volunteers.v1"]
    for s in spans.values():
        assert path(s)[0] == "civicgrid-intake: POST /api/v1/requests"
        if service_of[s["spanID"]] != "civicgrid-intake" and s["operationName"].startswith("process"):
            assert _tags(s)["civicgrid.request_id"] == rid
    # store calls appear under the spans that made them
    assert any(_tags(s).get("db.system") == "mongodb" and service_of[s["spanID"]] == "civicgrid-grid"
               for s in spans.values())
