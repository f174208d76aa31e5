"""The shared rate limiter on the real store: concurrent hits never let more through than the limit."""

from __future__ import annotations

import asyncio

from civicgrid_runtime.ratelimit import Limit, RateLimiter

NOW = 1_800_000_030.0  # 30 s into a 60 s window


async def test_concurrent_hits_from_many_callers_share_one_exact_count(fresh_db):
    limiter = RateLimiter(fresh_db["rate_limits"], window_seconds=60)
    limit = Limit("submit", 20)
    answers = await asyncio.gather(*(limiter.hit(limit, "10.0.0.1", now=NOW) for _ in range(50)))
    assert answers.count(None) == 20
    assert set(answers) - {None} == {30}  # Retry-After: the rest of the window
    assert await limiter.hit(limit, "10.0.0.2", now=NOW) is None  # another client has its own count


async def test_a_new_window_starts_a_new_count_and_old_windows_are_swept(fresh_db):
    limiter = RateLimiter(fresh_db["rate_limits"], window_seconds=60)
    limit = Limit("read", 1)
    assert await limiter.hit(limit, "c", now=NOW) is None
    assert await limiter.hit(limit, "c", now=NOW + 1) == 29
    assert await limiter.hit(limit, "c", now=NOW + 30) is None  # the next window
    await limiter.sweep(now=NOW + 30)  # the first window ended, the second runs
    assert await fresh_db["rate_limits"].count_documents({}) == 1
    assert await limiter.hit(limit, "c", now=NOW + 31) == 59


async def test_no_limit_costs_no_store_round_trip(fresh_db):
    limiter = RateLimiter(fresh_db["rate_limits"], window_seconds=60)
    assert await limiter.hit(Limit("x", 0), "c") is None
    assert await fresh_db["rate_limits"].count_documents({}) == 0


async def test_the_client_is_kept_only_as_a_hash(fresh_db):
    limiter = RateLimiter(fresh_db["rate_limits"], window_seconds=60)
    await limiter.hit(Limit("submit", 5), "api_key:o311_secret", now=NOW)
    doc = await fresh_db["rate_limits"].find_one({})
    assert "o311_secret" not in str(doc)
