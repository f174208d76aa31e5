"""Real local infrastructure for civicgrid without Docker.

Fetches and caches (outside the clone) Apache Kafka's own jars from Maven Central, a FerretDB v1
binary, a Jaeger v2 binary and a Dex binary (the local OpenID Connect provider, identity.py) built
from the Go module proxy, then runs a single-node KRaft broker, FerretDB on SQLite, Jaeger (OTLP in,
traces in memory, query API and UI) and Dex on loopback. Start-up waits for real readiness (broker answers metadata, store answers
``ping``); logs go to files; ``down`` stops with SIGTERM, waits, then SIGKILL, and frees the ports.

    python deploy/local/infra.py setup     # fetch/build what is missing (cached)
    python deploy/local/infra.py up        # start kafka + store + jaeger, wait until ready
    python deploy/local/infra.py down      # stop them
    python deploy/local/infra.py up-identity | down-identity   # only the identity provider
    python deploy/local/infra.py status
    python deploy/local/infra.py restart-kafka | restart-store   # used by fault tests

Order of preference (see README): KAFKA_BOOTSTRAP_SERVERS / MONGODB_URL from the environment,
then Docker (docker-compose / testcontainers), then these local processes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import identity

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CACHE = Path(os.environ.get("CIVICGRID_CACHE_DIR", Path.home() / ".cache" / "civicgrid"))
STATE = Path(os.environ.get("CIVICGRID_STATE_DIR", ROOT / ".run")).resolve()
KAFKA_VERSION = "4.1.1"
KAFKA_LIBS = CACHE / f"kafka-{KAFKA_VERSION}" / "libs"
def _wrapper_digest() -> str:
    import hashlib

    h = hashlib.sha256()
    # a changed wrapper or patch gets its own cached binary
    for path in [HERE / "ferretdb" / name for name in ("go.mod", "go.sum", "main.go")] + ferretdb_patches():
        if path.exists():
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def ferretdb_patches() -> list[Path]:
    return sorted((HERE / "ferretdb" / "patches").glob("*.patch"))


FERRETDB_BIN = CACHE / "bin" / f"civicgrid-ferretdb-1.24.2-{_wrapper_digest()}"
JAEGER_VERSION = "1.75.0"  # the module's version; its cmd/jaeger is Jaeger v2, a Collector build
JAEGER_DIR = HERE / "jaeger"


def _jaeger_digest() -> str:
    import hashlib

    return hashlib.sha256((JAEGER_DIR / "go.mod").read_bytes() + (JAEGER_DIR / "go.sum").read_bytes()).hexdigest()[:12]


JAEGER_BIN = CACHE / "bin" / f"civicgrid-jaeger-{JAEGER_VERSION}-{_jaeger_digest()}"

# below Linux's ephemeral range (32768-60999): a client reconnecting in a loop to a stopped
# broker could otherwise connect to itself on the broker's own port and keep it from restarting
KAFKA_PORT = int(os.environ.get("CIVICGRID_KAFKA_PORT", "19092"))
CONTROLLER_PORT = int(os.environ.get("CIVICGRID_KAFKA_CONTROLLER_PORT", "19093"))
STORE_PORT = int(os.environ.get("CIVICGRID_STORE_PORT", "27027"))
#: Jaeger's usual ports: its UI and query API, OTLP over HTTP, the query API over gRPC
JAEGER_UI_PORT = int(os.environ.get("CIVICGRID_JAEGER_UI_PORT", "16686"))
JAEGER_OTLP_PORT = int(os.environ.get("CIVICGRID_JAEGER_OTLP_PORT", "4318"))
JAEGER_QUERY_GRPC_PORT = int(os.environ.get("CIVICGRID_JAEGER_QUERY_GRPC_PORT", "16685"))
KAFKA_HEAP = os.environ.get("CIVICGRID_KAFKA_HEAP", "768m")


def log(msg: str) -> None:
    print(f"[infra] {msg}", flush=True)


# --------------------------------------------------------------------------- setup


def setup_kafka() -> None:
    marker = KAFKA_LIBS / ".complete"
    if marker.exists():
        log(f"kafka {KAFKA_VERSION} jars cached in {KAFKA_LIBS}")
        return
    if not shutil.which("mvn") or not shutil.which("java"):
        sys.exit("[infra] Java 17 and Maven are needed to fetch Kafka's jars (apt-get install maven openjdk-17-jre)")
    log(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central (first run only)...")
    KAFKA_LIBS.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn", "-q", "-B", "-f", str(HERE / "kafka" / "pom.xml"),
        "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={KAFKA_LIBS}",
    ]
    subprocess.run(cmd, check=True)
    marker.touch()


def setup_ferretdb() -> None:
    if FERRETDB_BIN.exists():
        log(f"ferretdb binary cached at {FERRETDB_BIN}")
        return
    if not shutil.which("go"):
        sys.exit("[infra] Go is needed to build FerretDB from the Go module proxy")
    log("building FerretDB v1.24.2 (SQLite backend) from the Go module proxy (first run only)...")
    FERRETDB_BIN.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod")
    wrapper = HERE / "ferretdb"
    # The module's own source, patched (deploy/local/ferretdb/patches: its SQLite backend never
    # used the _id index, so each update or delete by _id scanned the whole collection), in a
    # build folder outside the clone; the wrapper builds against it through a `replace`.
    build = CACHE / "build" / FERRETDB_BIN.name
    shutil.rmtree(build, ignore_errors=True)
    download = subprocess.run(
        ["go", "mod", "download", "-json", "github.com/FerretDB/FerretDB@v1.24.2"],
        cwd=wrapper, check=True, env=env, capture_output=True, text=True,
    )
    shutil.copytree(json.loads(download.stdout)["Dir"], build / "FerretDB", copy_function=shutil.copyfile)
    for folder, _, _ in os.walk(build):
        os.chmod(folder, 0o755)  # the module cache is read-only; copytree kept its folders' modes
    for patch in ferretdb_patches():
        log(f"applying {patch.name}")
        subprocess.run(["git", "apply", "-p1", str(patch)], cwd=build / "FerretDB", check=True)
    (build / "wrapper").mkdir()
    for name in ("go.mod", "go.sum", "main.go"):
        shutil.copyfile(wrapper / name, build / "wrapper" / name)
    subprocess.run(
        ["go", "mod", "edit", "-replace", "github.com/FerretDB/FerretDB=../FerretDB"],
        cwd=build / "wrapper", check=True, env=env,
    )
    subprocess.run(["go", "build", "-o", str(FERRETDB_BIN), "."], cwd=build / "wrapper", check=True, env=env)
    shutil.rmtree(build, ignore_errors=True)


def setup_jaeger() -> None:
    if JAEGER_BIN.exists():
        log(f"jaeger binary cached at {JAEGER_BIN}")
        return
    if not shutil.which("go"):
        sys.exit("[infra] Go is needed to build Jaeger from the Go module proxy")
    log(f"building Jaeger v2 (module v{JAEGER_VERSION}) from the Go module proxy (first run only, a few minutes)...")
    JAEGER_BIN.parent.mkdir(parents=True, exist_ok=True)
    # `go install ...@version` refuses Jaeger's module (its go.mod has a replace directive): a small
    # module of our own (deploy/local/jaeger) names it as a tool and carries that replace. Its UI
    # assets are built from a separate repository and are not in the module: the query API and a
    # placeholder page are served.
    tmp = JAEGER_BIN.with_suffix(".tmp")
    subprocess.run(["go", "build", "-trimpath", "-o", str(tmp), "github.com/jaegertracing/jaeger/cmd/jaeger"],
                   cwd=JAEGER_DIR, check=True, env=dict(os.environ, CGO_ENABLED="0"))
    tmp.replace(JAEGER_BIN)


def setup() -> None:
    setup_kafka()
    setup_ferretdb()
    setup_jaeger()
    identity.setup()


# --------------------------------------------------------------------------- processes


def pidfile(name: str) -> Path:
    return STATE / f"{name}.pid"


def running_pid(name: str) -> int | None:
    try:
        pid = int(pidfile(name).read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def spawn(name: str, cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> int:
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    out = open(STATE / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    # own session: Ctrl-C in the terminal reaches only our supervisor, which stops us in order
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **(env or {})})
    pidfile(name).write_text(str(proc.pid))
    return proc.pid


def stop(name: str, timeout: float = 20.0) -> None:
    pid = running_pid(name)
    if pid is None:
        pidfile(name).unlink(missing_ok=True)
        return
    log(f"stopping {name} (pid {pid})")
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running_pid(name):
        _reap(pid)
        time.sleep(0.2)
    if running_pid(name):
        log(f"{name} did not stop in {timeout:.0f}s, killing")
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.5)
    _reap(pid)
    pidfile(name).unlink(missing_ok=True)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def kafka_properties() -> Path:
    data = STATE / "kafka-data"
    props = STATE / "kafka.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{CONTROLLER_PORT}",
                f"listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT},CONTROLLER://127.0.0.1:{CONTROLLER_PORT}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=6",
                "default.replication.factor=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=6",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=3",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                # topics are declared by the contracts' registry (partitions, retention); an
                # unknown name is a bug, not a new topic
                "auto.create.topics.enable=false",
                "log.retention.hours=-1",
                "log.segment.bytes=268435456",
                "num.network.threads=2",
                "num.io.threads=4",
                "",
            ]
        )
    )
    return props


def java_cmd(main_class: str, *args: str, heap: str = KAFKA_HEAP) -> list[str]:
    log4j = STATE / "log4j2.yaml"
    log4j.write_text(
        "Configuration:\n  Appenders:\n    Console:\n      name: STDOUT\n      PatternLayout:\n"
        "        Pattern: \"[%d] %p %m (%c)%n\"\n  Loggers:\n    Root:\n      level: WARN\n"
        "      AppenderRef:\n        - ref: STDOUT\n    Logger:\n      - name: kafka.server.KafkaServer\n"
        "        level: INFO\n"
    )
    return [
        "java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}",
        "-cp", f"{KAFKA_LIBS}/*", main_class, *args,
    ]


def should_start(name: str, port: int, variable: str) -> bool:
    """False when ours already runs; exits when a stranger holds the port."""
    if running_pid(name):
        log(f"{name} already running on 127.0.0.1:{port}")
        return False
    if port_open(port):
        sys.exit(f"[infra] port {port} is taken by another process; set {variable}")
    STATE.mkdir(parents=True, exist_ok=True)
    return True


def start_kafka() -> None:
    if not should_start("kafka", KAFKA_PORT, "CIVICGRID_KAFKA_PORT"):
        return
    props = kafka_properties()
    cluster_file = STATE / "kafka-cluster-id"
    if not cluster_file.exists():
        cluster_file.write_text(uuid.uuid4().hex[:22])
    fmt = subprocess.run(
        java_cmd("kafka.tools.StorageTool", "format", "-t", cluster_file.read_text().strip(),
                 "-c", str(props), "--ignore-formatted"),
        capture_output=True, text=True,
    )
    if fmt.returncode != 0:
        sys.exit(f"[infra] kafka storage format failed:\n{fmt.stdout}\n{fmt.stderr}")
    spawn("kafka", java_cmd("kafka.Kafka", str(props)), STATE)
    log(f"kafka starting on 127.0.0.1:{KAFKA_PORT} (log: {STATE / 'logs' / 'kafka.log'})")


def start_store() -> None:
    if not should_start("store", STORE_PORT, "CIVICGRID_STORE_PORT"):
        return
    # WAL with synchronous=NORMAL: a commit is atomic and survives the store process being killed
    # (what the fault tests do); only an OS crash or power cut can roll back the last commits.
    # FULL (the default) syncs the WAL on every commit and costs ~30% of update throughput here.
    sqlite = os.environ.get("CIVICGRID_STORE_SQLITE_PARAMS", "_pragma=synchronous(normal)")
    cmd = [str(FERRETDB_BIN), f"-listen=127.0.0.1:{STORE_PORT}", f"-data={STATE / 'store-data'}",
           f"-sqlite-params={sqlite}"]
    if os.environ.get("CIVICGRID_STORE_PPROF"):  # e.g. 127.0.0.1:6060, for `go tool pprof`
        cmd.append(f"-pprof={os.environ['CIVICGRID_STORE_PPROF']}")
    # Go's collector at GOGC=400 instead of 100: the store's garbage is short-lived documents; the
    # heap grows to a few hundred MB and the store does ~15-40% more operations per CPU second
    # (measured on inserts, updates and reads by _id).
    spawn("store", cmd, STATE, env={"GOGC": os.environ.get("CIVICGRID_STORE_GOGC", "400")})
    log(f"store (FerretDB/SQLite) starting on 127.0.0.1:{STORE_PORT} (log: {STATE / 'logs' / 'store.log'})")


def wait_kafka(timeout: float = 90.0) -> None:
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient  # the venv is set up before infra starts

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{KAFKA_PORT}", request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.describe_cluster()
            return True
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            return False
        finally:
            await admin.close()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running_pid("kafka"):
            tail = (STATE / "logs" / "kafka.log").read_text(errors="replace")[-3000:]
            sys.exit(f"[infra] kafka exited during start-up:\n{tail}")
        if port_open(KAFKA_PORT) and asyncio.run(probe()):
            log("kafka ready (metadata answered)")
            return
        time.sleep(0.5)
    sys.exit(f"[infra] kafka not ready after {timeout:.0f}s; see {STATE / 'logs' / 'kafka.log'}")


def wait_store(timeout: float = 60.0) -> None:
    from pymongo import MongoClient

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running_pid("store"):
            tail = (STATE / "logs" / "store.log").read_text(errors="replace")[-3000:]
            sys.exit(f"[infra] store exited during start-up:\n{tail}")
        if port_open(STORE_PORT):
            client = MongoClient(f"mongodb://127.0.0.1:{STORE_PORT}/", serverSelectionTimeoutMS=2000)
            try:
                client.admin.command("ping")
                log("store ready (ping answered)")
                return
            except Exception:  # noqa: BLE001
                pass
            finally:
                client.close()
        time.sleep(0.3)
    sys.exit(f"[infra] store not ready after {timeout:.0f}s; see {STATE / 'logs' / 'store.log'}")


def start_jaeger() -> None:
    if not should_start("jaeger", JAEGER_UI_PORT, "CIVICGRID_JAEGER_UI_PORT"):
        return
    if port_open(JAEGER_OTLP_PORT):
        sys.exit(f"[infra] port {JAEGER_OTLP_PORT} is taken by another process; set CIVICGRID_JAEGER_OTLP_PORT")
    ports = {"CIVICGRID_JAEGER_UI_PORT": str(JAEGER_UI_PORT), "CIVICGRID_JAEGER_OTLP_PORT": str(JAEGER_OTLP_PORT),
             "CIVICGRID_JAEGER_QUERY_GRPC_PORT": str(JAEGER_QUERY_GRPC_PORT)}
    spawn("jaeger", [str(JAEGER_BIN), f"--config={JAEGER_DIR / 'config.yaml'}"], STATE, env=ports)
    log(f"jaeger starting: UI http://127.0.0.1:{JAEGER_UI_PORT}, OTLP http://127.0.0.1:{JAEGER_OTLP_PORT} "
        f"(log: {STATE / 'logs' / 'jaeger.log'})")


def wait_jaeger(timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running_pid("jaeger"):
            tail = (STATE / "logs" / "jaeger.log").read_text(errors="replace")[-3000:]
            sys.exit(f"[infra] jaeger exited during start-up:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{JAEGER_UI_PORT}/api/services", timeout=2) as r:
                if r.status == 200 and port_open(JAEGER_OTLP_PORT):
                    log("jaeger ready (query API answered)")
                    return
        except OSError:
            pass
        time.sleep(0.3)
    sys.exit(f"[infra] jaeger not ready after {timeout:.0f}s; see {STATE / 'logs' / 'jaeger.log'}")
def start_identity() -> None:
    if not should_start("identity", identity.DEX_PORT, "CIVICGRID_DEX_PORT"):
        return
    config = identity.write_config(STATE / "dex.json")
    spawn("identity", identity.command(config), STATE)
    log(f"identity provider (Dex) starting at {identity.issuer()} (log: {STATE / 'logs' / 'identity.log'})")


def wait_identity() -> None:
    try:
        identity.wait_ready(identity.DEX_PORT)
    except RuntimeError as exc:
        tail = (STATE / "logs" / "identity.log").read_text(errors="replace")[-3000:]
        sys.exit(f"[infra] {exc}:\n{tail}")
    log("identity provider ready (discovery answered)")


def up_identity() -> None:
    identity.setup()
    start_identity()
    wait_identity()
    (STATE / "identity.env").write_text("".join(f"{k}={v}\n" for k, v in identity.settings_env().items()))


def down_identity() -> None:
    stop("identity")
    wait_port_free(identity.DEX_PORT)
    (STATE / "identity.env").unlink(missing_ok=True)


def wait_port_free(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while port_open(port) and time.monotonic() < deadline:
        time.sleep(0.2)


def endpoints() -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{KAFKA_PORT}",
        # FerretDB v1 has no retryable writes: its connection string says so (the code leaves the
        # driver's default on, for MongoDB)
        "MONGODB_URL": f"mongodb://127.0.0.1:{STORE_PORT}/?retryWrites=false",
        # not OTEL_EXPORTER_OTLP_ENDPOINT: tests and benchmarks export spans only when they ask
        # (tests/e2e/test_trace.py; make run does)
        "CIVICGRID_JAEGER_OTLP_ENDPOINT": f"http://127.0.0.1:{JAEGER_OTLP_PORT}",
        "CIVICGRID_JAEGER_URL": f"http://127.0.0.1:{JAEGER_UI_PORT}",
        **identity.settings_env(),
    }


def up() -> None:
    setup()
    start_store()
    start_kafka()
    start_jaeger()
    start_identity()
    wait_store()
    wait_kafka()
    wait_jaeger()
    wait_identity()
    (STATE / "infra.env").write_text("".join(f"{k}={v}\n" for k, v in endpoints().items()))
    for k, v in endpoints().items():
        log(f"{k}={v}")


def down() -> None:
    stop("kafka")
    stop("store")
    stop("store-checkpointer")  # started beside the store by earlier versions (ADR 0603)
    stop("jaeger")
    down_identity()
    wait_port_free(KAFKA_PORT)
    wait_port_free(STORE_PORT)
    wait_port_free(JAEGER_UI_PORT)
    (STATE / "infra.env").unlink(missing_ok=True)


def reset() -> None:
    down()
    for d in ("kafka-data", "store-data", "kafka-cluster-id"):
        p = STATE / d
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    log("local data removed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "command",
        choices=["setup", "up", "up-identity", "down-identity", "down", "status", "reset", "restart-kafka", "restart-store", "env"],
    )
    args = parser.parse_args()
    if args.command == "setup":
        setup()
    elif args.command == "up":
        up()
    elif args.command == "up-identity":
        up_identity()
    elif args.command == "down-identity":
        down_identity()
    elif args.command == "down":
        down()
    elif args.command == "reset":
        reset()
    elif args.command == "env":
        print(json.dumps(endpoints()))
    elif args.command == "status":
        for name in ("kafka", "store", "jaeger", "identity"):
            pid = running_pid(name)
            print(f"{name}: {'running pid ' + str(pid) if pid else 'stopped'}")
    elif args.command == "restart-kafka":
        stop("kafka")
        wait_port_free(KAFKA_PORT)
        start_kafka()
        wait_kafka()
    elif args.command == "restart-store":
        stop("store")
        wait_port_free(STORE_PORT)
        start_store()
        wait_store()


if __name__ == "__main__":
    main()
