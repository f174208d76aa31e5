"""No resident's name, phone number or e-mail appears in any message of any topic.

Self-contained: it drives its own residents through every path that publishes (both APIs,
duplicates, unmerge, rating, reopen, erasure), waits until intake's outboxes are empty, and scans
every topic from the offsets it found at its start (what it published, and whatever else ran
meanwhile), so it holds wherever it runs in the suite.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka.admin import AIOKafkaAdminClient
from intake_test_helpers import API_KEY, body

from civicgrid_contracts.events.grid import RequestResolved
from civicgrid_runtime.testing import end_offsets, eventually, read_topic

RESIDENTS = [
    {"name": "Chen Xiaoming", "phone": "+86 135 2468 1357", "email": "chen.xiaoming@example.cn"},
    {"name": "劉秀英", "phone": "010-6523-9876", "email": "liu.xiuying@mail.example.org"},
    {"name": "Zhao Lei", "phone": "18611223344", "email": "zhaolei1990@example.net"},
]


def needles() -> list[str]:
    out = []
    for r in RESIDENTS:
        digits = "".join(ch for ch in r["phone"] if ch.isdigit())
        out += [r["name"], r["phone"], r["email"], digits, digits[-11:], r["email"].split("@")[0]]
    return out


async def _topics(kafka: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        return [t for t in await admin.list_topics() if not t.startswith("__")]
    finally:
        await admin.close()


async def test_no_resident_pii_in_any_topic(ctx, infra):
    since = {t: await end_offsets(infra.kafka, t) for t in await _topics(infra.kafka)}
    rids = []
    for i, res in enumerate(RESIDENTS):
        b = body("sanitation", contact=res, description=f"Bins overflowing near entrance {i}")
        created = (await ctx.client.post("/api/v1/requests", json=b)).json()
        rids.append(created)
        # a neighbour reports the same (duplicate -> merged), via Open311 with the same resident's details
        lat, lon = b["location"]["lat"] + 0.0001, b["location"]["lon"]
        first, _, last = res["name"].partition(" ")
        r = await ctx.client.post("/open311/v2/requests.json", data={
            "api_key": API_KEY, "service_code": "sanitation", "lat": str(lat), "long": str(lon),
            "attribute[waste_type]": "household", "first_name": first, "last_name": last, "phone": res["phone"],
            "email": res["email"], "description": "Same bins"})
        assert r.status_code == 201
        dup = r.json()[0]["service_request_id"]
        await ctx.client.post(f"/api/v1/requests/{dup}/unmerge", json={"reason": "other bins"},
                              headers=ctx.token("operator"))
    # resolve, rate (one reopens), erase
    now = datetime.now(UTC)
    for c in rids:
        await ctx.publish(RequestResolved(request_id=c["request_id"], staff_id="s-9", resolution_note="Emptied",
                                          resolved_at=now))
    for c, rating in zip(rids, ["satisfied", "unsatisfied", "basically_satisfied"], strict=True):
        tok = {"X-Request-Token": c["token"]}

        async def resolved(rid=c["request_id"], tok=tok):
            return (await ctx.client.get(f"/api/v1/requests/{rid}", headers=tok)).json()["status"] == "resolved"

        await eventually(resolved)
        r = await ctx.client.post(f"/api/v1/requests/{c['request_id']}/rating",
                                  json={"rating": rating, "comment": "thanks"}, headers=tok)
        assert r.status_code == 200
        await ctx.client.post(f"/api/v1/requests/{c['request_id']}/erasure", headers=tok)

    async def outboxes_empty():
        db = ctx.db
        return await db["requests"].count_documents({"_outbox_pending": True}) == 0

    await eventually(outboxes_empty, timeout=30)

    names = await _topics(infra.kafka)
    assert "intake.requests.v1" in names and "intake.catalogue.v1" in names
    scanned = 0
    found: list[tuple[str, str]] = []
    lowered = [n.lower() for n in needles()]
    for topic in names:
        for rec in await read_topic(infra.kafka, topic, timeout=1.0, since=since.get(topic)):
            scanned += 1
            blob = b" ".join([rec.key or b"", rec.value or b""] + [k.encode() + b"=" + (v or b"")
                                                                  for k, v in rec.headers or ()])
            text = blob.decode("utf-8", "replace").lower()
            # JSON may escape non-ASCII: check the escaped form too
            esc = blob.decode("unicode_escape", "replace").lower() if b"\\u" in blob else text
            for n in lowered:
                if n in text or n in esc:
                    found.append((topic, n))
    assert scanned >= 3 * 4  # at least each resident's received, merged, unmerged and rated events
    assert found == [], f"resident PII on the bus: {found[:10]}"
