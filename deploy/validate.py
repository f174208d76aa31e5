"""Static validation of what is deployed, offline (``make lint``):

- ``chart``: renders the Helm chart (``helm template``) under a few value sets and validates every
  object with kubeconform in strict mode against the schemas kept in ``deploy/schemas`` (Kubernetes
  1.36 and the CRDs of Strimzi (Kafka, node pools, topics, users), KEDA, MongoDB Community and the Prometheus operator), then checks
  that its ``KafkaTopic``s are exactly the topic registry's;
- ``compose``: validates ``docker-compose.yml`` against the Compose specification's JSON Schema.

helm and kubeconform are built once from the Go module proxy by ``deploy/local/tools.sh``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "deploy" / "schemas"
CHART = ROOT / "deploy" / "helm" / "civicgrid"
COMPOSE = ROOT / "docker-compose.yml"
BIN = Path(os.environ.get("CIVICGRID_CACHE_DIR", Path.home() / ".cache" / "civicgrid")) / "bin"
KUBERNETES_VERSION = "1.36.0"
#: value sets rendered besides the defaults, so that every branch of the templates is validated
VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "existing secret, external Kafka, no console, fixed replicas, digests": [
        "--set", "secrets.existingSecret=civicgrid-prod", "--set", "kafka.create=false",
        "--set", "kafka.clusterName=city-kafka", "--set", "console.enabled=false",
        "--set-json", 'kafka.users.existing={"intake":{"name":"city-intake","secret":"city-intake-scram"}}',
        "--set", "grid.autoscaling.enabled=false", "--set", "grid.image.digest=sha256:" + "0" * 64,
        "--set", "ingress.tlsSecret=civicgrid-tls", "--set", "ingress.className=nginx",
        "--set", "traceCollector.endpoint=http://otel-collector.observability:4318",
        "--set-json", 'traceCollector.peers=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"observability"}}}]',
        "--set-json", 'identityProvider.peers=[{"ipBlock":{"cidr":"203.0.113.10/32"}}]',
    ],
    "no operators' extras, plain Kafka": [
        "--set", "kafka.authentication=none", "--set", "mongodb.create=false", "--set", "ingress.enabled=false", "--set", "networkPolicy.enabled=false",
        "--set", "monitoring.serviceMonitor.enabled=false", "--set", "monitoring.rules.enabled=false",
    ],
}


class Invalid(Exception):
    pass


def render(chart: Path, extra: list[str]) -> str:
    cmd = [str(BIN / "helm"), "template", "civicgrid", str(chart), "--namespace", "civicgrid-check",
           "--kube-version", KUBERNETES_VERSION, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise Invalid(f"helm template failed: {done.stderr.strip()}")
    return done.stdout


def kubeconform(manifests: str, schemas: Path) -> None:
    cmd = [str(BIN / "kubeconform"), "-strict", "-summary", "-output", "text",
           "-kubernetes-version", KUBERNETES_VERSION,
           "-schema-location", str(schemas / "kubernetes"),
           "-schema-location", str(schemas / "crds") + "/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"]
    done = subprocess.run(cmd, input=manifests, capture_output=True, text=True)
    if done.returncode:
        raise Invalid(f"kubeconform: {(done.stdout + done.stderr).strip()}")


def topics_match_registry(manifests: str) -> None:
    from civicgrid_contracts import topics

    rendered = {d["spec"]["topicName"]: d["spec"] for d in yaml.safe_load_all(manifests)
                if d and d.get("kind") == "KafkaTopic"}
    wanted = {t.name: t for t in topics.ALL_TOPICS}
    if set(rendered) != set(wanted):
        raise Invalid(f"the chart's KafkaTopics differ from the topic registry: missing {sorted(set(wanted) - set(rendered))}, "
                      f"unknown {sorted(set(rendered) - set(wanted))} (run `make chart-topics`)")
    for name, spec in rendered.items():
        config = {k: str(v) for k, v in spec["config"].items()}
        expected = {**wanted[name].config, "min.insync.replicas": "2"}
        if spec["replicas"] != 3 or spec["partitions"] != wanted[name].partitions or config != expected:
            raise Invalid(f"KafkaTopic {name}: replicas {spec['replicas']}, partitions {spec['partitions']}, "
                          f"config {config}; the registry says partitions {wanted[name].partitions}, config {expected}")


def registry_is_current(chart: Path) -> None:
    sys.path.insert(0, str(ROOT / "deploy" / "helm"))
    from chart_registry import render as render_registry

    if (chart / "registry.yaml").read_text() != render_registry():
        raise Invalid(f"{chart / 'registry.yaml'} differs from the topic registry in contracts/: run `make chart-topics`")


def helm_lint(chart: Path) -> None:
    done = subprocess.run([str(BIN / "helm"), "lint", "--strict", str(chart), "--kube-version", KUBERNETES_VERSION],
                          capture_output=True, text=True)
    if done.returncode:
        raise Invalid(f"helm lint: {(done.stdout + done.stderr).strip()}")


def check_chart(chart: Path = CHART, schemas: Path = SCHEMAS) -> int:
    registry_is_current(chart)
    helm_lint(chart)
    count = 0
    for label, extra in VALUE_SETS.items():
        manifests = render(chart, extra)
        try:
            kubeconform(manifests, schemas)
        except Invalid as exc:
            raise Invalid(f"chart with {label}: {exc}") from None
        count += sum(1 for d in yaml.safe_load_all(manifests) if d)
        if label == "defaults":
            topics_match_registry(manifests)
    return count


def check_compose(compose: Path = COMPOSE, schema: Path = SCHEMAS / "compose" / "compose-spec.json") -> None:
    validator = Draft7Validator(json.loads(schema.read_text()))
    errors = sorted(validator.iter_errors(yaml.safe_load(compose.read_text())), key=lambda e: list(e.path))
    if errors:
        raise Invalid(f"{compose.name} breaks the Compose specification:\n" + "\n".join(
            f"  at {'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["chart", "compose", "all"], nargs="?", default="all")
    parser.add_argument("--chart", type=Path, default=CHART)
    parser.add_argument("--compose", type=Path, default=COMPOSE)
    args = parser.parse_args()
    try:
        if args.what in ("chart", "all"):
            n = check_chart(args.chart)
            print(f"chart: {n} objects rendered under {len(VALUE_SETS)} value sets, all valid (kubeconform -strict)")
        if args.what in ("compose", "all"):
            check_compose(args.compose)
            print(f"compose: {args.compose.name} valid against the Compose specification")
    except Invalid as exc:
        print(f"INVALID {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
