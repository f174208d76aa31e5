"""End-to-end fixtures: all four services as separate processes against the real broker and store."""

from __future__ import annotations

import pytest

from civicgrid_runtime.auth import mint_token
from tests.support.platform import Platform

SECRET = "civicgrid-development-secret-change-me"


@pytest.fixture(scope="module")
def platform(infra):
    p = Platform(infra.kafka, infra.mongodb)
    try:
        p.start()
        yield p
    except Exception:
        for sp in p.services.values():
            print(f"--- {sp.name} log ---\n{sp.tail()}")
        raise
    finally:
        p.stop()


def token(role: str, sub: str = "e2e", area: str = "") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(secret=SECRET, sub=sub, role=role, area=area)}"}
