"""Open311 GeoReport v2: every method in JSON and XML, the standard errors, filters and extensions."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from intake_test_helpers import API_KEY, events_of, spot

from civicgrid_contracts import topics
from civicgrid_contracts.events.grid import RequestAssigned, RequestResolved
from civicgrid_contracts.values import AreaPath
from civicgrid_runtime.testing import eventually

BASE = "/open311/v2"


def form(service="sanitation", **over):
    lat, lon = spot()
    f = {"api_key": API_KEY, "service_code": service, "lat": str(lat), "long": str(lon),
         "description": "Overflowing bins", "attribute[waste_type]": "household"}
    f.update(over)
    return {k: v for k, v in f.items() if v is not None}


async def _post(ctx, data, fmt="json"):
    return await ctx.client.post(f"{BASE}/requests.{fmt}", data=data)


def _error(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body, list) and body[0]["code"] == status and body[0]["description"]
    return body[0]["description"]


async def test_discovery_services_and_definitions(ctx):
    d = (await ctx.client.get(f"{BASE}/discovery.json")).json()
    assert d["endpoints"][0]["specification"] == "http://wiki.open311.org/GeoReport_v2"
    x = ET.fromstring((await ctx.client.get(f"{BASE}/discovery.xml")).content)
    assert x.tag == "discovery" and x.find("endpoints/endpoint/formats/format").text == "text/xml"
    r = await ctx.client.get(f"{BASE}/services.json")
    services = {s["service_code"]: s for s in r.json()}
    assert set(services["sanitation"]) == {"service_code", "service_name", "description", "metadata", "type",
                                           "keywords", "group"}
    assert services["sanitation"]["metadata"] is True and services["neighbour_dispute"]["metadata"] is False
    zh = {s["service_code"]: s for s in (await ctx.client.get(f"{BASE}/services.json?locale=zh_CN")).json()}
    assert zh["illegal_construction"]["service_name"] == "違法建設"
    r = await ctx.client.get(f"{BASE}/services.xml")
    assert r.headers["content-type"].startswith("text/xml")
    x = ET.fromstring(r.content)
    assert x.tag == "services" and {e.findtext("service_code") for e in x.findall("service")} == set(services)
    defn = (await ctx.client.get(f"{BASE}/services/elderly_home_care.json")).json()
    care = defn["attributes"][0]
    assert care["code"] == "care_type" and care["datatype"] == "multivaluelist" and care["required"] is True
    assert {"key": "shopping", "name": "Shopping"} in care["values"] and care["variable"] is True
    x = ET.fromstring((await ctx.client.get(f"{BASE}/services/elderly_home_care.xml")).content)
    assert x.tag == "service_definition" and x.find("attributes/attribute/values/value/key").text == "company"
    _error(await ctx.client.get(f"{BASE}/services/nope.json"), 404)
    r = await ctx.client.get(f"{BASE}/services/nope.xml")
    assert r.status_code == 404 and ET.fromstring(r.content).find("error/code").text == "404"
    _error(await ctx.client.get(f"{BASE}/services.json?jurisdiction_id=elsewhere"), 404)
    assert (await ctx.client.get(f"{BASE}/services.json?jurisdiction_id=civicgrid.local")).status_code == 200


async def test_post_request_json_and_xml_with_attributes(ctx, infra):
    r = await _post(ctx, form(first_name="Wang", last_name="Wu", phone="13800001111", email="wang.wu@example.org",
                              device_id="dev-1", account_id="acct-7"))
    assert r.status_code == 201, r.text
    [created] = r.json()
    assert set(created) >= {"service_request_id", "service_notice", "account_id"} and created["account_id"] == "acct-7"
    rid = created["service_request_id"]
    data = form("elderly_home_care", **{"attribute[waste_type]": None})
    data["attribute[care_type][]"] = ["shopping", "company"]
    r = await ctx.client.post(f"{BASE}/requests.xml", data=data)
    assert r.status_code == 201 and r.headers["content-type"].startswith("text/xml")
    x = ET.fromstring(r.content)
    rid2 = x.findtext("request/service_request_id")
    assert x.tag == "service_requests" and rid2
    staff = (await ctx.client.get(f"/api/v1/requests/{rid2}", headers=ctx.token("operator"))).json()
    assert staff["attributes"] == {"care_type": ["company", "shopping"]} and staff["channel"] == "open311"

    async def received():
        evs = await events_of(infra.kafka, topics.REQUESTS.name, subject=rid)
        return evs or None

    ev = (await eventually(received))[0]
    assert ev.data.channel == "open311" and ev.data.reporter_id and ev.data.attributes == {"waste_type": "household"}
    # token -> id
    tok = created["token"]
    t = (await ctx.client.get(f"{BASE}/tokens/{tok}.json")).json()
    assert t == [{"service_request_id": rid, "token": tok}]
    x = ET.fromstring((await ctx.client.get(f"{BASE}/tokens/{tok}.xml")).content)
    assert x.findtext("request/service_request_id") == rid
    _error(await ctx.client.get(f"{BASE}/tokens/{rid}.forged.json"), 404)


async def test_post_errors(ctx):
    before = await ctx.db["requests"].count_documents({})
    assert "api_key" in _error(await _post(ctx, form(api_key=None)), 403)
    assert "api_key" in _error(await _post(ctx, form(api_key="wrong")), 403)
    r = await _post(ctx, form(api_key="wrong"), fmt="xml")
    assert r.status_code == 403 and ET.fromstring(r.content).findtext("error/code") == "403"
    assert "service_code" in _error(await _post(ctx, form(service_code="nope")), 400)
    assert "service_code" in _error(await _post(ctx, form(service_code=None)), 400)
    assert "address_string" in _error(await _post(ctx, form(lat=None, long=None)), 400)
    assert "lat" in _error(await _post(ctx, form(lat="95")), 400)
    assert "lat/long" in _error(await _post(ctx, form(lat="north")), 400)
    assert "description" in _error(await _post(ctx, form(description="y" * 4001)), 400)
    assert "waste_type" in _error(await _post(ctx, form(**{"attribute[waste_type]": "plutonium"})), 400)
    assert "email" in _error(await _post(ctx, form(email="nope")), 400)
    assert (await _post(ctx, form(), fmt="yaml")).status_code == 404
    assert await ctx.db["requests"].count_documents({}) == before
    # an address alone is a location
    r = await _post(ctx, form(lat=None, long=None, address_string="3 Jiaodaokou Rd"))
    assert r.status_code == 201
    r = await _post(ctx, form(lat=None, long=None, address_id="B-110105001001001-007"))
    assert r.status_code == 201


async def test_get_requests_filters_paging_and_notes(ctx):
    ids = []
    for _ in range(3):
        r = await _post(ctx, form("greening", **{"attribute[waste_type]": None}))
        ids.append(r.json()[0]["service_request_id"])
    # assign and resolve the first, so status filters and notes have something to show
    now = datetime.now(UTC)
    area = AreaPath(district="110105", street="110105001", community="110105001001", grid="110105001001002")
    await ctx.publish(RequestAssigned(request_id=ids[0], area=area, assignee_id="s-1", holder="B", reason="A on leave",
                                      map_version=1, assigned_at=now))
    await ctx.publish(RequestResolved(request_id=ids[0], staff_id="s-1", resolution_note="Tree trimmed",
                                      resolved_at=now))

    async def closed():
        r = await ctx.client.get(f"{BASE}/requests/{ids[0]}.json")
        return r.json()[0] if r.json()[0]["status"] == "closed" else None

    one = await eventually(closed)
    assert one["agency_responsible"] == "110105001001002" and one["status_notes"] == "Tree trimmed"
    assert set(one) == {"service_request_id", "status", "status_notes", "service_name", "service_code",
                        "description", "agency_responsible", "service_notice", "requested_datetime",
                        "updated_datetime", "expected_datetime", "address", "address_id", "zipcode", "lat", "long",
                        "media_url"}
    assert one["requested_datetime"].endswith("+08:00") and one["expected_datetime"] > one["requested_datetime"]
    r = (await ctx.client.get(f"{BASE}/requests.json", params={"service_code": "greening", "status": "open"})).json()
    assert {x["service_request_id"] for x in r} >= set(ids[1:]) and ids[0] not in {x["service_request_id"] for x in r}
    r = (await ctx.client.get(f"{BASE}/requests.json", params={"service_code": "greening", "status": "closed"})).json()
    assert [x["service_request_id"] for x in r] == [ids[0]]
    r = (await ctx.client.get(f"{BASE}/requests.json", params={"service_request_id": f"{ids[2]},{ids[0]}",
                                                               "service_code": "ignored"})).json()
    assert [x["service_request_id"] for x in r] == [ids[2], ids[0]]
    p1 = (await ctx.client.get(f"{BASE}/requests.json",
                               params={"service_code": "greening", "page_size": 2, "page": 1})).json()
    p2 = (await ctx.client.get(f"{BASE}/requests.json",
                               params={"service_code": "greening", "page_size": 2, "page": 2})).json()
    assert len(p1) == 2 and {x["service_request_id"] for x in p1 + p2} >= set(ids)
    future = (now + timedelta(days=1)).isoformat()
    assert (await ctx.client.get(f"{BASE}/requests.json", params={"service_code": "greening",
                                                                  "start_date": future})).json() == []
    old_start, old_end = (now - timedelta(days=150)).isoformat(), (now - timedelta(days=100)).isoformat()
    assert (await ctx.client.get(f"{BASE}/requests.json", params={"start_date": old_start,
                                                                  "end_date": now.isoformat()})).status_code == 400
    assert (await ctx.client.get(f"{BASE}/requests.json", params={"start_date": old_start,
                                                                  "end_date": old_end})).status_code == 200
    assert (await ctx.client.get(f"{BASE}/requests.json", params={"start_date": old_start,
                                                                  "end_date": old_end})).json() == []
    _error(await ctx.client.get(f"{BASE}/requests.json", params={"status": "pending"}), 400)
    _error(await ctx.client.get(f"{BASE}/requests.json", params={"page_size": 5000}), 400)
    _error(await ctx.client.get(f"{BASE}/requests.json", params={"start_date": "yesterday"}), 400)
    ext = (await ctx.client.get(f"{BASE}/requests/{ids[0]}.json?extensions=true")).json()[0]
    assert [n["type"] for n in ext["notes"]] == ["civicgrid.request.received", "civicgrid.request.assigned",
                                                 "civicgrid.request.resolved"]
    assert ext["extended_attributes"]["civicgrid_status"] == "resolved"
    x = ET.fromstring((await ctx.client.get(f"{BASE}/requests/{ids[0]}.xml?extensions=true")).content)
    assert x.findtext("request/status") == "closed" and len(x.findall("request/notes/note")) == 3
    x = ET.fromstring((await ctx.client.get(f"{BASE}/requests.xml", params={"service_code": "greening"})).content)
    assert x.tag == "service_requests" and len(x.findall("request")) >= 3
    _error(await ctx.client.get(f"{BASE}/requests/not-a-request.json"), 404)
