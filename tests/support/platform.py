"""The whole platform as separate processes, for end-to-end tests, fault tests and the pipeline
benchmark.

Each service runs as ``civicgrid-<svc> serve`` in its own process group with its own database and
consumer group (unique per ``Platform``), on a free loopback port, against the real Kafka broker
and store. New consumer groups are started at the topics' current end, so a platform sees only
the traffic it generates even on a broker with history. Services can be SIGKILLed and restarted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
SERVICES = ("intake", "grid", "matching", "audit")


def daytime_visit(days_ahead: int = 1, hour: int = 10, tz: str = "Asia/Shanghai") -> str:
    """A visit time residents would ask for (tomorrow 10:00 in the demo city), as ISO 8601: the demo
    volunteers are available by day, so a request sent at night still gets offers."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    day = datetime.now(ZoneInfo(tz)).date() + timedelta(days=days_ahead)
    return datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo(tz)).isoformat()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([str(BIN / f"civicgrid-{self.name}"), "serve"], cwd=ROOT,
                                     env={**self.env, **(extra_env or {})}, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        self.start()
        self.wait_ready()

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""


@dataclass
class Platform:
    kafka: str
    mongodb: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)

    def database(self, svc: str) -> str:
        return f"e2e_{self.tag}_{svc}"

    def group(self, svc: str) -> str:
        return f"e2e-{self.tag}-{svc}"

    def env_for(self, svc: str, port: int) -> dict[str, str]:
        p = svc.upper()
        env = dict(os.environ)
        env.setdefault("CIVICGRID_ENV", "development")  # the built-in development secrets
        env.update({
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka, "MONGODB_URL": self.mongodb,
            f"{p}_HTTP_PORT": str(port), f"{p}_DATABASE": self.database(svc), f"{p}_CONSUMER_GROUP": self.group(svc),
            f"{p}_LOG_LEVEL": "WARNING",
        })
        for other, proc in self.services.items():  # where the other services listen (demo tooling)
            env[f"CIVICGRID_{other.upper()}_URL"] = proc.url
        env.update(self.extra_env)
        return env

    def start(self, services: tuple[str, ...] = SERVICES, *, demo: bool = True) -> Platform:
        import asyncio
        import atexit

        from civicgrid_contracts import topics
        from civicgrid_runtime.testing import start_group_at_end

        atexit.register(self.stop, drop=False)  # never leave service processes behind
        logs = Path(os.environ.get("CIVICGRID_STATE_DIR", ROOT / ".run")) / "logs" / f"platform-{self.tag}"
        logs.mkdir(parents=True, exist_ok=True)
        for svc in services:
            asyncio.run(start_group_at_end(self.kafka, self.group(svc), [t.name for t in topics.EVENT_TOPICS]))
            self.services[svc] = ServiceProcess(svc, free_port(), {}, logs / f"{svc}.log")
        for svc, sp in self.services.items():
            sp.env = self.env_for(svc, sp.port)
            sp.start()
        for sp in self.services.values():
            sp.wait_ready()
        if demo:
            self.load_demo()
        return self

    def load_demo(self) -> None:
        for svc in ("intake", "grid", "matching"):
            if svc in self.services:
                sp = self.services[svc]
                proc = subprocess.run([str(BIN / f"civicgrid-{svc}"), "load-demo"], cwd=ROOT, env=sp.env,
                                      capture_output=True, text=True, timeout=600)
                if proc.returncode != 0:
                    raise RuntimeError(f"civicgrid-{svc} load-demo failed:\n{proc.stdout}\n{proc.stderr}")
        if "grid" in self.services:
            self.wait_map_loaded()

    def wait_map_loaded(self, timeout: float = 60) -> None:
        """grid picks a new map version up on its next refresh (every few seconds): wait for it, so
        that what comes next (locating, listing grids) sees the demo city."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url('grid')}/v1/map", timeout=2) as r:
                    if r.status == 200 and json.loads(r.read()).get("counts", {}).get("grids"):
                        return
            except OSError:  # connection refused, or 503 while no map is loaded yet
                pass
            time.sleep(0.3)
        raise RuntimeError(f"grid did not load the demo map in {timeout:.0f} s")

    def url(self, svc: str) -> str:
        return self.services[svc].url

    def add_replica(self, svc: str) -> ServiceProcess:
        """Another process of the same service: same database, same consumer group, its own port.
        The group rebalances and the two share the partitions."""
        first = self.services[svc]
        port = free_port()
        n = sum(1 for k in self.services if k.startswith(f"{svc}#")) + 2
        sp = ServiceProcess(svc, port, {**first.env, f"{svc.upper()}_HTTP_PORT": str(port)},
                            first.log_path.with_name(f"{svc}-{n}.log"))
        self.services[f"{svc}#{n}"] = sp
        sp.start()
        sp.wait_ready()
        return sp

    def stop(self, *, drop: bool = True) -> None:
        for sp in self.services.values():
            sp.stop()
        if drop:
            from pymongo import MongoClient

            client = MongoClient(self.mongodb)
            for svc in {k.split("#")[0] for k in self.services}:
                db = client[self.database(svc)]  # collections, not the database file (see drop_quietly)
                for col in db.list_collection_names():
                    db.drop_collection(col)
            client.close()

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc) -> None:
        self.stop(drop=not os.environ.get("CIVICGRID_KEEP_E2E_DATA"))


@contextlib.contextmanager
def running(p: Platform, *services: str, demo: bool = True) -> Iterator[Platform]:
    """``p`` started (all services, or those named), stopped afterwards; when anything fails, each
    service's log tail is printed first (what a failing fixture needs to be understood)."""
    try:
        p.start(services or SERVICES, demo=demo)
        yield p
    except Exception:
        for sp in p.services.values():
            print(f"--- {sp.name} log ---\n{sp.tail()}")
        raise
    finally:
        p.stop()


def main() -> None:  # pragma: no cover - manual use: python tests/support/platform.py
    p = Platform(os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["MONGODB_URL"]).start()
    for svc, sp in p.services.items():
        print(svc, sp.url)
    try:
        signal.pause()
    finally:
        p.stop()


if __name__ == "__main__":
    sys.exit(main())
