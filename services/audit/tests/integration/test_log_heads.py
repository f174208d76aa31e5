"""The log heads kept in memory between batches: a writer that stopped before writing its head
back, and two writers taking turns on one log (a rebalance), still leave one intact chain."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from civicgrid_audit.adapters.auditlog import AuditLog, LogConflict, Signer, log_name
from civicgrid_audit.settings import AuditSettings
from civicgrid_contracts import Envelope
from civicgrid_contracts.events.grid import RequestAccepted
from civicgrid_runtime.bus import Delivery

TOPIC = "heads.test"


def deliveries(first: int, last: int) -> list[Delivery]:
    return [Delivery(Envelope.wrap(RequestAccepted(request_id=f"R{i}", staff_id="s1",
                                                   accepted_at=datetime(2026, 11, 2, tzinfo=UTC)),
                                   source="/civicgrid/grid", event_id=f"{TOPIC}-{i}"), TOPIC, 0, i)
            for i in range(first, last)]


def trail(db) -> AuditLog:
    return AuditLog(db, Signer(AuditSettings().signing_key.get_secret_value()))


async def stored_head(db) -> dict | None:
    return await db["log_heads"].find_one({"_id": log_name(TOPIC, 0)})


async def test_batches_do_not_write_the_head_until_flushed(fresh_db):
    log = trail(fresh_db)
    await log.ensure_indexes()
    await log.append(deliveries(0, 5))
    await log.append(deliveries(5, 8))
    assert await stored_head(fresh_db) is None
    assert await log.flush_heads() == 1
    assert (await stored_head(fresh_db))["size"] == 8
    assert await log.flush_heads() == 0  # nothing moved since


async def test_a_writer_that_never_wrote_its_head_back_is_continued_from_the_records(fresh_db):
    crashed = trail(fresh_db)
    await crashed.ensure_indexes()
    await crashed.append(deliveries(0, 4))
    await crashed.flush_heads()
    await crashed.append(deliveries(4, 9))  # head at 4 in the store, records up to 8: then a crash
    successor = trail(fresh_db)
    assert await successor.append(deliveries(6, 12)) == 3  # 6-8 are in the log already
    await successor.checkpoint()
    assert (await stored_head(fresh_db))["size"] == 12
    result = await successor.verify(log_name(TOPIC, 0))
    assert result["ok"] and result["size"] == 12 and result["checkpoints_checked"] == 1


async def test_two_writers_taking_turns_keep_one_chain(fresh_db):
    a, b = trail(fresh_db), trail(fresh_db)
    await a.ensure_indexes()
    await a.append(deliveries(0, 3))
    await a.flush_heads()
    await b.append(deliveries(3, 6))  # the partition moved to b, which folds a's records first
    await b.flush_heads()
    with pytest.raises(LogConflict):
        await a.append(deliveries(6, 8))  # and back: a's head in memory is behind the log
    assert await a.append(deliveries(6, 8)) == 2  # the retry reads the head and the records again
    with pytest.raises(LogConflict):
        await b.append(deliveries(8, 9))  # b's head is behind now
    assert await b.append(deliveries(8, 9)) == 1
    await a.flush_heads()  # stores 8: b's write of 6 is still the stored one
    await b.flush_heads()  # guarded by 6: refused, the head read again (9) and written next time
    await b.flush_heads()
    assert (await stored_head(fresh_db))["size"] == 9
    result = await a.verify(log_name(TOPIC, 0))
    assert result["ok"] and result["size"] == 9


async def test_the_logs_endpoint_shows_heads_not_written_back_yet(fresh_db):
    import types

    import httpx
    from fastapi import FastAPI

    from civicgrid_audit.entrypoints.http import router
    from civicgrid_runtime.auth import mint_token
    from civicgrid_runtime.problems import install_problem_handlers

    log = trail(fresh_db)
    await log.ensure_indexes()
    await log.append(deliveries(0, 4))
    app = FastAPI()
    app.state.service, app.state.auth_secret = types.SimpleNamespace(log=log), "audit-test-secret-of-at-least-32-bytes"
    install_problem_handlers(app)
    app.include_router(router)
    token = mint_token(secret="audit-test-secret-of-at-least-32-bytes", sub="aud", role="auditor")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/audit/logs", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert [(h["log"], h["size"], h["last_offset"]) for h in r.json()] == [(log_name(TOPIC, 0), 4, 3)]
