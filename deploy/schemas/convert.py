"""Turns Kubernetes' OpenAPI document and operators' CRDs into the JSON Schemas kubeconform reads,
in the layout its ``-schema-location`` expects. Run by hand when a vendored source changes (see
README.md beside this file); ``make lint`` only reads the output, never the network.

The conversion follows kubeconform's own ``scripts/openapi2jsonschema.py`` (Apache-2.0): strict
schemas (``additionalProperties: false`` wherever properties are listed and unknown fields are not
preserved, as kubectl's validation does), int-or-string and quantities as string or number, and
every reference inlined (kubeconform's "standalone" layout).

    python deploy/schemas/convert.py kubernetes SWAGGER_JSON VERSION
    python deploy/schemas/convert.py crds CRD_YAML...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
#: the Kubernetes kinds the chart renders (group/version, kind): only these are vendored
KUBERNETES_KINDS = (
    ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("v1", "ServiceAccount"),
    ("apps/v1", "Deployment"), ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"), ("networking.k8s.io/v1", "Ingress"),
)
INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
QUANTITY = {"oneOf": [{"type": "string"}, {"type": "number"}]}


def strict(schema: Any) -> Any:
    """Unknown fields are errors, except where the API keeps them (preserve-unknown-fields)."""
    if isinstance(schema, dict):
        if schema.get("format") == "int-or-string" or schema.get("x-kubernetes-int-or-string"):
            return dict(INT_OR_STRING)
        out = {k: strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def inline(schema: Any, definitions: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if ref:
            name = ref.rsplit("/", 1)[-1]
            if name.endswith("api.resource.Quantity"):
                return dict(QUANTITY)
            if name in seen:  # JSONSchemaProps and the like refer to themselves: leave them open
                return {}
            return inline(definitions[name], definitions, seen + (name,))
        return {k: inline(v, definitions, seen) for k, v in schema.items()}
    if isinstance(schema, list):
        return [inline(v, definitions, seen) for v in schema]
    return schema


def kind_suffix(api_version: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f"-{group.split('.')[0]}-{version}" if group else f"-{version}"


def kubernetes(swagger_path: str, version: str) -> None:
    definitions = json.loads(Path(swagger_path).read_text())["definitions"]
    out = HERE / "kubernetes" / f"v{version}-standalone-strict"
    out.mkdir(parents=True, exist_ok=True)
    for api_version, kind in KUBERNETES_KINDS:
        group, _, ver = api_version.rpartition("/")
        name = next(n for n, d in definitions.items() for gvk in d.get("x-kubernetes-group-version-kind", ())
                    if gvk["kind"] == kind and gvk["version"] == ver and gvk["group"] == group)
        schema = strict(inline(definitions[name], definitions, (name,)))
        schema["$schema"] = "http://json-schema.org/schema#"
        path = out / f"{kind.lower()}{kind_suffix(api_version)}.json"
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(path.relative_to(HERE))


def crds(paths: list[str]) -> None:
    for p in paths:
        for doc in yaml.safe_load_all(Path(p).read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for v in spec["versions"]:
                if not v.get("served", True) or "schema" not in v:
                    continue
                schema = strict(v["schema"]["openAPIV3Schema"])
                path = HERE / "crds" / spec["group"] / f"{spec['names']['kind'].lower()}_{v['name']}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
                print(path.relative_to(HERE))


if __name__ == "__main__":
    if sys.argv[1:2] == ["kubernetes"]:
        kubernetes(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["crds"]:
        crds(sys.argv[2:])
    else:
        sys.exit(__doc__)
