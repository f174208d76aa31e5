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
    assert egress_ports == {53, 9092, 9093, 27017}  # DNS, Kafka, MongoDB (no provider or collector configured)
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
