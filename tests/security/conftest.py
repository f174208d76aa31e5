"""One platform (all four services as processes on the real broker and store, demo data loaded)
shared by the fuzzing and the authorization-matrix tests of this folder."""

from __future__ import annotations

import pytest

from civicgrid_runtime.auth import mint_token
from civicgrid_runtime.settings import DEV_AUTH_SECRET
from tests.support.platform import Platform, running


@pytest.fixture(scope="session")
def platform(infra):
    p = Platform(infra.kafka, infra.mongodb)
    with running(p):
        yield p


def bearer(role: str, *, area: str = "", sub: str = "security-test", secret: str = DEV_AUTH_SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(secret=secret, sub=sub, role=role, area=area)}"}
