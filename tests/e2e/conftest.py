"""End-to-end fixtures: all four services as separate processes against the real broker and store."""

from __future__ import annotations

import pytest

from civicgrid_runtime.auth import mint_token
from tests.support.platform import Platform, running

SECRET = "civicgrid-development-secret-change-me"


@pytest.fixture(scope="module")
def platform(infra):
    p = Platform(infra.kafka, infra.mongodb)
    with running(p):
        yield p


def token(role: str, sub: str = "e2e", area: str = "") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(secret=SECRET, sub=sub, role=role, area=area)}"}
