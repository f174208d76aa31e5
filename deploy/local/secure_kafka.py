"""A second local Kafka broker that speaks only TLS + SASL/SCRAM to clients (test profile).

Same jars as the plain broker (infra.py), its own ports and data folder. Certificates are made at
start with the ``cryptography`` package: a throw-away CA, and a broker certificate for 127.0.0.1
in a PKCS#12 keystore. The SCRAM users are written into the storage at format time
(``StorageTool format --add-scram``); the broker itself authenticates to its own SASL_SSL listener
as one of them. ``client_env`` is what a civicgrid service needs to connect
(``CIVICGRID_KAFKA_*``, docs/adr/0502-transport-security.md).

    python deploy/local/secure_kafka.py /tmp/secure-kafka 29093   # run until Ctrl-C
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import infra

MECHANISM = "SCRAM-SHA-512"
SCRAM_CLASS = "org.apache.kafka.common.security.scram.ScramLoginModule"


@dataclass
class SecureBroker:
    port: int
    workdir: Path
    ca_file: Path
    username: str
    password: str
    proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "CIVICGRID_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CIVICGRID_KAFKA_SASL_MECHANISM": MECHANISM, "CIVICGRID_KAFKA_SASL_USERNAME": self.username,
                "CIVICGRID_KAFKA_SASL_PASSWORD": self.password, "CIVICGRID_KAFKA_SSL_CAFILE": str(self.ca_file)}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_certificates(workdir: Path, password: str) -> tuple[Path, Path, Path]:
    """(CA certificate PEM, server PKCS#12 keystore, server key and certificate PEM) for 127.0.0.1,
    valid for a day; the PEM serves TLS endpoints of other tests (the store's TLS test)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def cert(subject: str, key, issuer_name, issuer_key, *, ca: bool) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                             x509.DNSName("localhost")]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "civicgrid test CA")])
    ca_cert = cert("civicgrid test CA", ca_key, ca_name, ca_key, ca=True)
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker_cert = cert("127.0.0.1", broker_key, ca_name, ca_key, ca=False)
    ca_file = workdir / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    keystore = workdir / "broker.p12"
    keystore.write_bytes(pkcs12.serialize_key_and_certificates(
        b"broker", broker_key, broker_cert, [ca_cert], serialization.BestAvailableEncryption(password.encode())))
    server_pem = workdir / "server.pem"
    server_pem.write_bytes(broker_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption())
                           + broker_cert.public_bytes(serialization.Encoding.PEM))
    server_pem.chmod(0o600)
    return ca_file, keystore, server_pem


def properties(workdir: Path, port: int, controller_port: int, keystore: Path, ca_file: Path, store_password: str,
               broker_password: str) -> Path:
    props = workdir / "server.properties"
    props.write_text("\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=SASL_SSL://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=SASL_SSL",
        f"sasl.enabled.mechanisms={MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
        f'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={SCRAM_CLASS} required username="broker" '
        f'password="{broker_password}";',
        "ssl.keystore.type=PKCS12",
        f"ssl.keystore.location={keystore}",
        f"ssl.keystore.password={store_password}",
        f"ssl.key.password={store_password}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={ca_file}",
        f"log.dirs={workdir / 'data'}",
        "num.partitions=3",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=3",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "",
    ]))
    return props


def start(workdir: Path, port: int, controller_port: int, *, username: str = "civicgrid") -> SecureBroker:
    """Format storage (with the SCRAM users) and start the broker; ``wait_ready`` before use."""
    infra.setup_kafka()
    workdir.mkdir(parents=True, exist_ok=True)
    store_password, broker_password, password = (secrets.token_urlsafe(16) for _ in range(3))
    ca_file, keystore, _ = make_certificates(workdir, store_password)
    props = properties(workdir, port, controller_port, keystore, ca_file, store_password, broker_password)
    fmt = subprocess.run(infra.java_cmd(
        "kafka.tools.StorageTool", "format", "-t", uuid.uuid4().hex[:22], "-c", str(props),
        "--add-scram", f"{MECHANISM}=[name=broker,password={broker_password}]",
        "--add-scram", f"{MECHANISM}=[name={username},password={password}]", heap="256m"),
        capture_output=True, text=True)
    if fmt.returncode != 0:
        raise RuntimeError(f"formatting the secure broker's storage failed:\n{fmt.stdout}\n{fmt.stderr}")
    log = open(workdir / "kafka.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(infra.java_cmd("kafka.Kafka", str(props), heap="512m"), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    return SecureBroker(port, workdir, ca_file, username, password, proc)


async def wait_ready(broker: SecureBroker, timeout: float = 120.0) -> None:
    """Until an admin client authenticated over TLS + SCRAM gets the cluster's metadata."""
    import asyncio
    import time

    from aiokafka.admin import AIOKafkaAdminClient

    from civicgrid_runtime.settings import KafkaTransportSettings

    options = KafkaTransportSettings(
        security_protocol="SASL_SSL", sasl_mechanism=MECHANISM, sasl_username=broker.username,
        sasl_password=broker.password, ssl_cafile=str(broker.ca_file)).client_options()
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if broker.proc is not None and broker.proc.poll() is not None:
            tail = (broker.workdir / "kafka.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the secure broker exited during start-up:\n{tail}")
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000, **options)
        try:
            await admin.start()
            await admin.describe_cluster()
            return
        except Exception as exc:  # noqa: BLE001 - not ready yet; the last error is reported
            last = exc
        finally:
            await admin.close()
        await asyncio.sleep(1)
    raise RuntimeError(f"the secure broker did not answer over TLS + SCRAM in {timeout:.0f}s: {last!r}")


def main() -> None:  # pragma: no cover - manual use
    import asyncio
    import signal

    workdir, port = Path(sys.argv[1]), int(sys.argv[2])
    broker = start(workdir, port, port + 1)
    asyncio.run(wait_ready(broker))
    for k, v in broker.client_env().items():
        print(f"{k}={v}")
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
