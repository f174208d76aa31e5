"""Fixtures shared by every suite in the repository (services' own tests and cross-service tests).

``infra`` resolves the REAL Kafka broker and MongoDB-protocol store (environment, then Docker,
then the project's local processes) and fails the test -- never skips it -- when they are missing.
"""

from __future__ import annotations

import os

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient

from civicgrid_runtime.testing import Infrastructure, drop_quietly, resolve_infrastructure, unique

# tests run on the built-in development secrets; outside this mode every service refuses them
os.environ.setdefault("CIVICGRID_ENV", "development")

_infra: Infrastructure | None = None
_infra_error: str | None = None
_fakes_only = False


def pytest_configure(config):
    global _fakes_only
    _fakes_only = config.getoption("--fakes-only")


def _get_infra() -> Infrastructure:
    global _infra, _infra_error
    if _fakes_only:  # a test of the unit layer that reaches for a real part is misclassified: say so
        pytest.fail("--fakes-only: this test needs the real broker and store; mark it (or its parameter) "
                    "with pytest.mark.infra", pytrace=False)
    if _infra is None and _infra_error is None:
        try:
            _infra = resolve_infrastructure()
        except Exception as exc:  # noqa: BLE001
            _infra_error = str(exc)
    if _infra is None:
        pytest.fail(f"Real infrastructure is required and missing: {_infra_error}", pytrace=False)
    return _infra


@pytest.fixture(scope="session")
def infra() -> Infrastructure:
    return _get_infra()


@pytest.fixture
def unique_name():
    return unique


@pytest_asyncio.fixture
async def mongo(infra: Infrastructure):
    """An async client on the real store; databases created through ``fresh_db`` are dropped."""
    client = AsyncMongoClient(infra.mongodb, tz_aware=True)
    yield client
    await client.close()


@pytest_asyncio.fixture
async def fresh_db(mongo):
    name = unique("test")
    yield mongo[name]
    await drop_quietly(mongo, name)


def pytest_report_header(config):
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return [f"infrastructure: Kafka {os.environ['KAFKA_BOOTSTRAP_SERVERS']}, store {os.environ.get('MONGODB_URL')}"]
    return ["infrastructure: resolved at first use (env -> docker -> local processes)"]


#: test id -> whether it needs the real broker and store (the ``infra`` fixture or marker)
_needs_real: dict[str, bool] = {}
_ran = {"fakes": 0, "real": 0}


def pytest_addoption(parser):
    parser.addoption("--fakes-only", action="store_true",
                     help="run only the tests that need no real broker, store or browser (the unit layer)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        _needs_real[item.nodeid] = "infra" in getattr(item, "fixturenames", ()) or \
            item.get_closest_marker("infra") is not None
        if _needs_real[item.nodeid]:
            item.add_marker("infra")  # its reports then say so, also from pytest-xdist's workers
    if config.getoption("--fakes-only"):
        real = [item for item in items if _needs_real[item.nodeid]]
        items[:] = [item for item in items if not _needs_real[item.nodeid]]
        config.hook.pytest_deselected(items=real)


def pytest_runtest_logreport(report):
    if report.when == "call" and not report.skipped:
        _ran["real" if "infra" in report.keywords else "fakes"] += 1


def pytest_terminal_summary(terminalreporter):
    banner = os.environ.get("CIVICGRID_TEST_INFRA_BANNER")
    if banner:
        terminalreporter.write_line(banner)
    terminalreporter.write_line(f"civicgrid tests: {_ran['fakes']} ran without infrastructure (fakes, pure code), "
                                f"{_ran['real']} against the real broker and store")
