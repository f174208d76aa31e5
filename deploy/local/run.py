"""`make run`: the whole platform on this machine with a demo city.

Starts Kafka, the store and the identity provider (deploy/local/infra.py), every service that exists as its own process
(logs in .run/logs/<service>.log), waits until each answers /health/ready, loads the demo city
(map, staff, departments, catalogue, volunteers), prints where everything listens, then -- unless
``--no-simulate`` -- drives a simulated day with a live terminal view. Ctrl-C stops everything
cleanly: services first (SIGTERM, then SIGKILL after a grace period), then Kafka and the store.

    make run                       # demo city, its backlog, and a simulated day at the default rate
    make run RUN_ARGS="--rate 20 --time-scale 120"
    make run RUN_ARGS="--backlog 0"  # no backlog of imported cases
    make run RUN_ARGS=--no-simulate

Ports: the services listen on 8101-8104 and the console on 8100 unless ``INTAKE_HTTP_PORT``,
``GRID_HTTP_PORT``, ``MATCHING_HTTP_PORT``, ``AUDIT_HTTP_PORT`` and ``CONSOLE_HTTP_PORT`` say
otherwise (the infrastructure's: ``CIVICGRID_KAFKA_PORT`` etc., see infra.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import identity  # deploy/local/identity.py: the local identity provider and its demo staff

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("CIVICGRID_STATE_DIR", ROOT / ".run")).resolve()
BIN = ROOT / ".venv" / "bin"
SERVICES = {svc: int(os.environ.get(f"{svc.upper()}_HTTP_PORT", port))
            for svc, port in {"intake": 8101, "grid": 8102, "matching": 8103, "audit": 8104}.items()}
#: the web console: a backend-for-frontend over the four services (started once they are ready)
CONSOLE_PORT = int(os.environ.get("CONSOLE_HTTP_PORT", "8100"))
#: demo data, in dependency order: the catalogue first (others follow its events), then the map
DEMO = [("intake", ["load-demo"]), ("grid", ["load-demo"]), ("matching", ["load-demo"])]


def log(msg: str) -> None:
    print(f"[run] {msg}", flush=True)


def available(service: str) -> bool:
    pkg = ROOT / "services" / service / "src" / f"civicgrid_{service}" / "entrypoints" / "cli.py"
    return pkg.exists() and (BIN / f"civicgrid-{service}").exists()


def infra(cmd: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "deploy" / "local" / "infra.py"), cmd], check=True)


def service_env(infra_env: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ, **infra_env)
    env.setdefault("CIVICGRID_ENV", "development")  # the demo runs on the built-in development secrets
    # every span to the local Jaeger (unless another collector is named)
    env.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", infra_env["CIVICGRID_JAEGER_OTLP_ENDPOINT"])
    for svc, port in SERVICES.items():
        env[f"{svc.upper()}_HTTP_PORT"] = str(port)
        # where the console, the demo tools and the simulator find each service
        env.setdefault(f"CIVICGRID_{svc.upper()}_URL", f"http://127.0.0.1:{port}")
    env["CONSOLE_HTTP_PORT"] = str(CONSOLE_PORT)
    return env


def start_service(svc: str, env: dict[str, str]) -> subprocess.Popen:
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    out = open(STATE / "logs" / f"{svc}.log", "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen([str(BIN / f"civicgrid-{svc}"), "serve"], cwd=ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(svc: str, port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (STATE / "logs" / f"{svc}.log").read_text(errors="replace")[-2500:]
            raise RuntimeError(f"{svc} exited with {proc.returncode} during start-up:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{svc} not ready after {timeout:.0f}s; see {STATE / 'logs' / (svc + '.log')}")


def console_env(env: dict[str, str], infra_env: dict[str, str]) -> dict[str, str]:
    """The console signs staff in at the local identity provider (the platform-wide CIVICGRID_OIDC_*
    are in infra.env; its client, scopes and public URL here), and offers the development sign-in beside it."""
    if not infra_env.get("CIVICGRID_OIDC_ISSUER"):
        return env
    return {**identity.console_env(), **env, "CONSOLE_HTTP_PORT": str(CONSOLE_PORT)}


def print_console(port: int, oidc: bool) -> None:
    """Where the console is and whom one can sign in as: the demo staff's accounts at the identity
    provider (login and password), which the development sign-in also lists."""
    print(f"  console          {identity.console_public_url()}  (residents: /report; staff: /signin)")
    if not oidc:
        return
    print(f"  demo accounts    sign in with the city account at /signin (password {identity.DEMO_PASSWORD} for all):")
    for staff_id, role, area in identity.DEMO_STAFF:
        print(f"                   {identity.email(staff_id):<42} {role:<12} {area or 'whole district'}")


def stop_services(procs: dict[str, subprocess.Popen]) -> None:
    for svc, p in procs.items():
        if p.poll() is None:
            log(f"stopping {svc}")
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 15
    for p in procs.values():
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Any other option goes to the simulated day: "
                                            "python deploy/local/simulate.py --help (--rate, --time-scale, "
                                            "--backlog, --backlog-days, --seed).")
    parser.add_argument("--no-simulate", action="store_true", help="only bring the platform up")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0 = until Ctrl-C)")
    args, day_args = parser.parse_known_args()

    infra("up")
    infra_env = dict(line.split("=", 1) for line in (STATE / "infra.env").read_text().split())
    env = service_env(infra_env)
    procs: dict[str, subprocess.Popen] = {}
    stopping = False

    def on_signal(signum, frame):  # noqa: ARG001
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        for svc in SERVICES:
            if available(svc):
                procs[svc] = start_service(svc, env)
            else:
                log(f"{svc}: not built yet, skipped")
        for svc, p in procs.items():
            wait_ready(svc, SERVICES[svc], p)
            log(f"{svc} ready")
        for svc, cmd in DEMO:
            if svc in procs:
                log(f"loading demo data: civicgrid-{svc} {' '.join(cmd)}")
                subprocess.run([str(BIN / f"civicgrid-{svc}"), *cmd], cwd=ROOT, env=env, check=True)
        if available("console"):
            procs["console"] = start_service("console", console_env(env, infra_env))
            wait_ready("console", CONSOLE_PORT, procs["console"])
            log("console ready")
        print()
        print("civicgrid is running:")
        print(f"  Kafka            {infra_env['KAFKA_BOOTSTRAP_SERVERS']}")
        print(f"  store (FerretDB) {infra_env['MONGODB_URL']}")
        for svc in (s for s in procs if s in SERVICES):
            port = SERVICES[svc]
            print(f"  {svc:<16} http://127.0.0.1:{port}  (API docs /docs, health /health/ready, metrics /metrics)")
        if "intake" in procs:
            print(f"  Open311          http://127.0.0.1:{SERVICES['intake']}/open311/v2/discovery.json")
        print(f"  traces (Jaeger)  {infra_env['CIVICGRID_JAEGER_URL']}  (query API /api/traces?service=civicgrid-intake; "
              "README: following one request)")
        if "console" in procs:
            print_console(CONSOLE_PORT, oidc=bool(infra_env.get("CIVICGRID_OIDC_ISSUER")))
        print(f"  logs             {STATE / 'logs'}")
        if infra_env.get("CIVICGRID_OIDC_ISSUER"):
            print(f"  sign-in (OIDC)   {infra_env['CIVICGRID_OIDC_ISSUER']}  (Dex; demo staff <staff id>@civicgrid.local, "
                  "password civicgrid-demo)")
            print(f"  tokens           set -a; . {STATE / 'infra.env'}; set +a; "
                  ".venv/bin/civicgrid-token --oidc --user admin@civicgrid.local --password civicgrid-demo")
        print("  dev tokens       .venv/bin/civicgrid-token --role supervisor --sub demo  (CIVICGRID_ENV=development)")
        print("Ctrl-C stops everything.\n")
        simulator = ROOT / "deploy" / "local" / "simulate.py"
        if not args.no_simulate and simulator.exists():
            cmd = [sys.executable, str(simulator), *day_args]
            if args.duration:
                cmd += ["--duration", str(args.duration)]
            subprocess.run(cmd, cwd=ROOT, env=env)
        else:
            deadline = time.monotonic() + args.duration if args.duration else None
            while deadline is None or time.monotonic() < deadline:
                for svc, p in procs.items():
                    if p.poll() is not None:
                        log(f"{svc} exited with {p.returncode}; see {STATE / 'logs' / (svc + '.log')}")
                        return 1
                time.sleep(1)
    except KeyboardInterrupt:
        print()
        log("stopping")
    except Exception as exc:  # noqa: BLE001
        log(f"error: {exc}")
        return 1
    finally:
        stop_services(procs)
        infra("down")
        log("stopped; ports freed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
