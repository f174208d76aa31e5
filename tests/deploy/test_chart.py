"""The Helm chart renders, every object is valid against the vendored schemas (kubeconform -strict),
its KafkaTopics are the topic registry's, its pods meet the restricted profile and start-up, and
each check fails on a deliberately broken copy (made here, in a temporary folder)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

from civicgrid_contracts import topics

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "civicgrid"
SERVICES = ("intake", "grid", "matching", "audit", "console")


@pytest.fixture(scope="module")
def objects(validate):
    return [d for d in yaml.safe_load_all(validate.render(CHART, [])) if d]


def of_kind(objects, kind):
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


@pytest.fixture
def broken_chart(tmp_path):
    copy = tmp_path / "civicgrid"
    shutil.copytree(CHART, copy)
    return copy


def test_every_object_of_every_value_set_is_valid(validate):
    assert validate.check_chart() > 100


def test_one_kafka_topic_per_registry_topic_dead_letters_included(objects):
    kafka_topics = {o["spec"]["topicName"]: o["spec"] for o in objects if o["kind"] == "KafkaTopic"}
    assert set(kafka_topics) == {t.name for t in topics.ALL_TOPICS}
    assert {t.name for t in topics.DEAD_LETTER_TOPICS} <= set(kafka_topics)
    for spec in kafka_topics.values():
        assert spec["replicas"] == 3 and spec["config"]["min.insync.replicas"] == 2
        assert spec["config"]["retention.ms"] == -1
    assert all(o["apiVersion"] == "kafka.strimzi.io/v1" for o in objects if o["apiVersion"].startswith("kafka."))
    pool = next(o for o in objects if o["kind"] == "KafkaNodePool")
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}  # KRaft


def test_pods_are_restricted_pinned_and_probed_for_their_real_start_up(objects):
    deployments = of_kind(objects, "Deployment")
    assert set(deployments) == {f"civicgrid-{s}" for s in SERVICES}
    for d in deployments.values():
        pod = d["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert not container["image"].endswith(":latest") and ":" in container["image"]
        assert pod["topologySpreadConstraints"]
        assert pod["enableServiceLinks"] is False  # its CIVICGRID_<SVC>_PORT variables would stop the service
        assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
    intake = deployments["civicgrid-intake"]["spec"]["template"]["spec"]["containers"][0]
    budget = intake["startupProbe"]["periodSeconds"] * intake["startupProbe"]["failureThreshold"]
    catch_up = next(e["value"] for e in intake["env"] if e["name"] == "INTAKE_DUPLICATE_CATCH_UP_SECONDS")
    assert budget >= float(catch_up) + 30  # the duplicate index's catch-up, then topics and indexes
    assert not any("namespace" in o["metadata"] for o in objects)  # the release's namespace


def test_scaling_exposure_and_alerts(objects):
    scalers = of_kind(objects, "ScaledObject")
    for group in topics.CONSUMER_GROUPS:
        triggers = scalers[f"civicgrid-{group}"]["spec"]["triggers"]
        assert {"type": "kafka", "group": group} in [{"type": t["type"], "group": t["metadata"].get("consumerGroup")}
                                                     for t in triggers if t["type"] == "kafka"]
    assert "cpu" in {t["type"] for t in scalers["civicgrid-intake"]["spec"]["triggers"]}
    assert len(of_kind(objects, "PodDisruptionBudget")) == len(SERVICES)
    (ingress,) = of_kind(objects, "Ingress").values()
    backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert backends == {"civicgrid-intake", "civicgrid-console"}
    policies = of_kind(objects, "NetworkPolicy")
    assert set(policies) == {f"civicgrid-{s}" for s in SERVICES}
    egress_ports = {p["port"] for rule in policies["civicgrid-grid"]["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 9093, 27017}  # DNS, Kafka's TLS listener, MongoDB (no provider or collector configured)
    (rules,) = of_kind(objects, "PrometheusRule").values()
    alerts = {r["alert"] for g in rules["spec"]["groups"] for r in g["rules"]}
    assert {"CivicgridConsumerLag", "CivicgridDeadLetters", "CivicgridOutboxBacklog", "CivicgridEscalationLag",
            "CivicgridStoreUnreachable", "CivicgridBrokerUnreachable"} <= alerts
    # every metric an alert reads is one the services export
    import civicgrid_runtime.metrics  # noqa: F401 - registers them
    exported = {family.name for family in REGISTRY.collect()}
    read = {re.sub(r"_(total|bucket|count|sum)$", "", m) for g in rules["spec"]["groups"] for r in g["rules"]
            for m in re.findall(r"civicgrid_[a-z_]+", r["expr"])}
    assert read and read <= exported, read - exported


def _container(deployment):
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_every_service_is_its_own_scram_user_with_only_what_it_needs(objects):
    (kafka,) = of_kind(objects, "Kafka").values()
    assert kafka["spec"]["kafka"]["listeners"] == [
        {"name": "tls", "port": 9093, "type": "internal", "tls": True, "authentication": {"type": "scram-sha-512"}}]
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple"}
    users = of_kind(objects, "KafkaUser")
    assert set(users) == {f"civicgrid-{g}" for g in topics.CONSUMER_GROUPS}  # the console has no Kafka client
    for service in topics.CONSUMER_GROUPS:
        spec = users[f"civicgrid-{service}"]["spec"]
        assert spec["authentication"] == {"type": "scram-sha-512"} and spec["authorization"]["type"] == "simple"
        granted = {(a["resource"]["type"], a["resource"]["name"], op) for a in spec["authorization"]["acls"]
                   for op in a["operations"]}
        assert all(a.get("type", "allow") == "allow" and a["resource"]["patternType"] == "literal"
                   for a in spec["authorization"]["acls"])
        writes = {t.name for t in topics.ALL_TOPICS if service in t.owner.split(", ")}
        assert topics.dead_letter(service).name in writes
        assert {n for kind, n, op in granted if op == "Write"} == writes
        assert {n for kind, n, op in granted if kind == "topic" and op == "Read"} == {t.name for t in topics.READS[service]}
        assert {n for kind, n, op in granted if op == "Describe"} == {t.name for t in topics.ALL_TOPICS}
        assert {(n, op) for kind, n, op in granted if kind == "group"} == {(service, "Read")}
        assert {op for _, _, op in granted} <= {"Read", "Write", "Describe"}


def test_the_services_read_what_the_registry_says_they_read():
    from civicgrid_audit.bootstrap import CONSUMED_TOPICS
    from civicgrid_intake.bootstrap import LIFECYCLE_TOPICS
    from civicgrid_matching.bootstrap import CONSUMED

    reads = {s: {t.name for t in read} for s, read in topics.READS.items()}
    assert set(CONSUMED_TOPICS) <= reads["audit"] and set(CONSUMED) <= reads["matching"]
    assert set(LIFECYCLE_TOPICS) | {topics.REQUESTS.name} <= reads["intake"]  # + its duplicate window
    assert all(topics.CALENDAR in read for read in topics.READS.values())  # every service follows the calendar


def test_services_connect_over_tls_as_their_user_with_the_password_from_its_secret(objects):
    (platform,) = of_kind(objects, "ConfigMap").values()
    assert platform["data"]["KAFKA_BOOTSTRAP_SERVERS"] == "civicgrid-kafka-bootstrap:9093"
    deployments = of_kind(objects, "Deployment")
    for service in topics.CONSUMER_GROUPS:
        deployment = deployments[f"civicgrid-{service}"]
        container = _container(deployment)
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
        assert env["CIVICGRID_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["CIVICGRID_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["CIVICGRID_KAFKA_SASL_USERNAME"] == f"civicgrid-{service}"
        assert env["CIVICGRID_KAFKA_SASL_PASSWORD"] == {
            "secretKeyRef": {"name": f"civicgrid-{service}", "key": "password"}}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["kafka-ca"]["readOnly"]
        assert env["CIVICGRID_KAFKA_SSL_CAFILE"] == mounts["kafka-ca"]["mountPath"] + "/ca.crt"
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["kafka-ca"]["secret"]["secretName"] == "civicgrid-cluster-ca-cert"
        assert volumes["kafka-ca"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
        (kafka_trigger,) = [t for t in of_kind(objects, "ScaledObject")[f"civicgrid-{service}"]["spec"]["triggers"]
                            if t["type"] == "kafka"]
        assert kafka_trigger["metadata"]["sasl"] == "scram_sha512" and kafka_trigger["metadata"]["tls"] == "enable"
        auth = of_kind(objects, "TriggerAuthentication")[kafka_trigger["authenticationRef"]["name"]]["spec"]
        assert {"parameter": "password", "name": f"civicgrid-{service}", "key": "password"} in auth["secretTargetRef"]
    assert not any(e["name"].startswith("CIVICGRID_KAFKA_") for e in _container(deployments["civicgrid-console"])["env"])


def test_an_existing_clusters_users_can_be_named(validate):
    rendered = [d for d in yaml.safe_load_all(validate.render(CHART, [
        "--set", "kafka.create=false", "--set", "kafka.clusterName=city-kafka",
        "--set-json", 'kafka.users.existing={"grid":{"name":"city-grid","secret":"city-grid-scram"}}'])) if d]
    assert "Kafka" not in {o["kind"] for o in rendered}
    assert set(of_kind(rendered, "KafkaUser")) == {"civicgrid-intake", "civicgrid-matching", "civicgrid-audit"}
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(of_kind(rendered, "Deployment")["civicgrid-grid"])["env"]}
    assert env["CIVICGRID_KAFKA_SASL_USERNAME"] == "city-grid"
    assert env["CIVICGRID_KAFKA_SASL_PASSWORD"] == {"secretKeyRef": {"name": "city-grid-scram", "key": "password"}}
    (platform,) = of_kind(rendered, "ConfigMap").values()
    assert platform["data"]["KAFKA_BOOTSTRAP_SERVERS"] == "city-kafka-kafka-bootstrap:9093"


def test_authentication_off_renders_the_plain_listener_as_before(validate):
    rendered = [d for d in yaml.safe_load_all(validate.render(CHART, ["--set", "kafka.authentication=none"])) if d]
    (kafka,) = of_kind(rendered, "Kafka").values()
    assert kafka["spec"]["kafka"]["listeners"] == [{"name": "plain", "port": 9092, "type": "internal", "tls": False},
                                                   {"name": "tls", "port": 9093, "type": "internal", "tls": True}]
    assert "authorization" not in kafka["spec"]["kafka"] and "userOperator" not in kafka["spec"]["entityOperator"]
    assert not of_kind(rendered, "KafkaUser") and not of_kind(rendered, "TriggerAuthentication")
    (platform,) = of_kind(rendered, "ConfigMap").values()
    assert platform["data"]["KAFKA_BOOTSTRAP_SERVERS"] == "civicgrid-kafka-bootstrap:9092"
    for deployment in of_kind(rendered, "Deployment").values():
        assert not any(e["name"].startswith("CIVICGRID_KAFKA_") for e in _container(deployment)["env"])
    egress_ports = {p["port"] for rule in of_kind(rendered, "NetworkPolicy")["civicgrid-grid"]["spec"]["egress"]
                    for p in rule["ports"]}
    assert egress_ports == {53, 9092, 27017}


def test_an_unknown_authentication_fails_to_render(validate):
    with pytest.raises(validate.Invalid, match="kafka.authentication"):
        validate.render(CHART, ["--set", "kafka.authentication=plain"])


# ------------------------------------------------------------------- each check fails on a broken copy

def test_an_unknown_field_fails_strict_validation(validate, broken_chart):
    template = broken_chart / "templates" / "deployment.yaml"
    template.write_text(template.read_text().replace("readOnlyRootFilesystem:", "readOnlyRootFileSystem:"))
    with pytest.raises(validate.Invalid, match="additional properties 'readOnlyRootFileSystem' not allowed"):
        validate.kubeconform(validate.render(broken_chart, []), validate.SCHEMAS)


def test_a_kafka_topic_of_the_old_api_fails(validate, broken_chart):
    template = broken_chart / "templates" / "kafkatopics.yaml"
    template.write_text(template.read_text().replace("kafka.strimzi.io/v1", "kafka.strimzi.io/v1beta2"))
    with pytest.raises(validate.Invalid, match="could not find schema for KafkaTopic"):
        validate.kubeconform(validate.render(broken_chart, []), validate.SCHEMAS)


def test_a_wrong_type_in_an_operator_resource_fails(validate, broken_chart):
    values = broken_chart / "values.yaml"
    values.write_text(values.read_text().replace("  nodes: 3 ", '  nodes: "three" '))
    with pytest.raises(validate.Invalid, match="KafkaNodePool"):
        validate.kubeconform(validate.render(broken_chart, []), validate.SCHEMAS)


def test_a_stale_topic_list_fails(validate, broken_chart):
    registry = broken_chart / "registry.yaml"
    registry.write_text(registry.read_text().replace("name: dlq.audit.v1", "name: dlq.audit-old.v1"))
    with pytest.raises(validate.Invalid, match="differs from the topic registry"):
        validate.check_chart(broken_chart)
    with pytest.raises(validate.Invalid, match=r"missing \['dlq.audit.v1'\], unknown \['dlq.audit-old.v1'\]"):
        validate.topics_match_registry(validate.render(broken_chart, []))


def test_a_topic_added_to_the_registry_fails_until_the_chart_is_regenerated(validate, monkeypatch):
    calendar = topics.TopicSpec("intake.holidays.v1", "intake", "a topic the chart does not have yet", partitions=1)
    monkeypatch.setattr(topics, "ALL_TOPICS", topics.ALL_TOPICS + (calendar,))
    with pytest.raises(validate.Invalid, match="differs from the topic registry"):
        validate.registry_is_current(CHART)
    with pytest.raises(validate.Invalid, match=r"missing \['intake.holidays.v1'\]"):
        validate.topics_match_registry(validate.render(CHART, []))


def test_an_unpinned_image_fails_to_render(validate):
    with pytest.raises(validate.Invalid, match="pin the image"):
        validate.render(CHART, ["--set", "grid.image.tag=latest"])
