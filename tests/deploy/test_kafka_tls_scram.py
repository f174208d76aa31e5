"""Transport security: a service connects to a broker that speaks only TLS + SASL/SCRAM.

A second local broker (deploy/local/secure_kafka.py: certificates made here, SCRAM users written at
format time) runs beside the shared one. Intake runs as its own process configured only through
the platform settings (``CIVICGRID_KAFKA_*``); it creates its topics, follows the calendar and
publishes a resident's request through that broker, and a consumer authenticated the same way
reads the event back. Clients without TLS, or with a wrong password, are refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from civicgrid_runtime.settings import KafkaTransportSettings, StoreTransportSettings
from tests.support.platform import BIN, ROOT, free_port

sys.path.insert(0, str(ROOT / "deploy" / "local"))
import secure_kafka  # noqa: E402 - deploy/local is not a package

pytestmark = [pytest.mark.infra, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
async def broker(tmp_path_factory):
    b = secure_kafka.start(tmp_path_factory.mktemp("secure-kafka"), free_port(), free_port())
    try:
        await secure_kafka.wait_ready(b)
        yield b
    finally:
        b.stop()


def settings_of(env: dict[str, str]) -> KafkaTransportSettings:
    return KafkaTransportSettings(**{k.removeprefix("CIVICGRID_KAFKA_").lower(): v for k, v in env.items()
                                     if k.startswith("CIVICGRID_KAFKA_")})


async def can_connect(bootstrap: str, **options) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, **options)
    try:
        await admin.start()
        await admin.describe_cluster()
        return True
    except Exception:  # noqa: BLE001 - refused, whatever the error
        return False
    finally:
        await admin.close()


async def test_clients_without_tls_or_with_a_wrong_password_are_refused(broker):
    good = settings_of(broker.client_env())
    assert await can_connect(broker.bootstrap, **good.client_options())
    assert not await can_connect(broker.bootstrap)  # plaintext
    wrong = good.model_copy(update={"sasl_password": good.sasl_password.__class__("not-the-password")})
    assert not await can_connect(broker.bootstrap, **wrong.client_options())


async def test_a_service_publishes_through_the_tls_scram_broker(broker, infra):
    port, db = free_port(), f"tls_{uuid.uuid4().hex[:8]}_intake"
    env = {**os.environ, **broker.client_env(), "MONGODB_URL": infra.mongodb, "INTAKE_HTTP_PORT": str(port),
           "INTAKE_DATABASE": db, "INTAKE_LOG_LEVEL": "WARNING", "CIVICGRID_ENV": "development"}
    log = broker.workdir / "intake.log"
    proc = subprocess.Popen([str(BIN / "civicgrid-intake"), "serve"], cwd=ROOT, env=env, start_new_session=True,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(f"http://127.0.0.1:{port}/api/v1/requests", json={
                "service_code": "sanitation", "description": "Rubbish piled in the stairwell", "channel": "app",
                "attributes": {"waste_type": "household"}, "location": {"lat": 39.91, "lon": 116.31}})
            assert r.status_code == 201, r.text
            rid = r.json()["request_id"]
        consumer = AIOKafkaConsumer("intake.requests.v1", bootstrap_servers=broker.bootstrap, group_id=None,
                                    auto_offset_reset="earliest", **settings_of(broker.client_env()).client_options())
        await consumer.start()
        try:
            seen: set[str] = set()
            end = time.monotonic() + 30
            while rid not in seen and time.monotonic() < end:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    seen |= {rec.key.decode() for rec in records}
            assert rid in seen
        finally:
            await consumer.stop()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_the_store_client_speaks_tls_when_the_settings_say_so(infra, tmp_path, monkeypatch):
    """FerretDB here has no TLS listener, so a TLS terminator on loopback (server certificate from
    a CA made here) stands in front of the real store: ``connect`` must verify the certificate
    against CIVICGRID_MONGODB_TLS_CA_FILE and then reach the store through it."""
    import asyncio
    import ssl

    from civicgrid_runtime.store import connect, ping

    ca_file, _, server_pem = secure_kafka.make_certificates(tmp_path, "unused-password")
    store_host, store_port = infra.mongodb.removeprefix("mongodb://").split("/")[0].rsplit(":", 1)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(server_pem)

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def forward(client_reader, client_writer):
        store_reader, store_writer = await asyncio.open_connection(store_host, int(store_port))
        await asyncio.gather(pipe(client_reader, store_writer), pipe(store_reader, client_writer),
                             return_exceptions=True)

    server = await asyncio.start_server(forward, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        monkeypatch.setenv("CIVICGRID_MONGODB_TLS", "true")
        monkeypatch.setenv("CIVICGRID_MONGODB_TLS_CA_FILE", str(ca_file))
        client = connect(f"mongodb://127.0.0.1:{port}/?directConnection=true", app_name="tls-test")
        try:
            assert await ping(client["tls_test"])
        finally:
            await client.close()
        (tmp_path / "other").mkdir()
        other_ca, _, _ = secure_kafka.make_certificates(tmp_path / "other", "unused-password")
        monkeypatch.setenv("CIVICGRID_MONGODB_TLS_CA_FILE", str(other_ca))  # a CA that did not sign it
        client = connect(f"mongodb://127.0.0.1:{port}/?directConnection=true", app_name="tls-test")
        try:
            assert not await ping(client["tls_test"])
        finally:
            await client.close()
    finally:
        server.close()
        await server.wait_closed()


def test_transport_settings_need_their_credentials_and_map_to_client_options(tmp_path):
    with pytest.raises(ValueError, match="SASL_USERNAME"):
        KafkaTransportSettings(security_protocol="SASL_SSL")
    with pytest.raises(ValueError, match="go together"):
        KafkaTransportSettings(security_protocol="SSL", ssl_certfile="/x.pem")
    assert KafkaTransportSettings().client_options() == {"security_protocol": "PLAINTEXT"}
    with pytest.raises(ValueError, match="MONGODB_USERNAME"):
        StoreTransportSettings(auth_mechanism="SCRAM-SHA-256")
    with pytest.raises(ValueError, match="TLS_CERTIFICATE_KEY_FILE"):
        StoreTransportSettings(auth_mechanism="MONGODB-X509")
    assert StoreTransportSettings().client_options() == {}
    assert StoreTransportSettings(tls=True, tls_ca_file="/ca.pem", tls_certificate_key_file="/me.pem",
                                  auth_mechanism="MONGODB-X509").client_options() == {
        "tls": True, "tlsCAFile": "/ca.pem", "tlsCertificateKeyFile": "/me.pem", "authMechanism": "MONGODB-X509"}
    assert StoreTransportSettings(auth_mechanism="SCRAM-SHA-256", username="svc", password="pw").client_options() == {
        "authMechanism": "SCRAM-SHA-256", "username": "svc", "password": "pw"}
