"""Generate the committed JSON Schemas and the AsyncAPI document, and check compatibility.

    python -m civicgrid_contracts.schemas generate   # rewrite contracts/schemas/ and asyncapi.json
    python -m civicgrid_contracts.schemas check      # fail if a model would break readers

Compatibility rule (readers of the committed schema must still read what writers now produce):
a field a reader requires must still be produced with a compatible type; a new field must be
optional for writers of the old version (it may not be required, since old events lack it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from civicgrid_contracts import registered_events, topics
from civicgrid_contracts.envelope import EventPayload

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_of(cls: type[EventPayload]) -> dict[str, Any]:
    schema = cls.model_json_schema(mode="serialization")
    schema["$id"] = f"urn:civicgrid:{cls.event_type}:v{cls.schema_version}"
    schema["x-event-type"] = cls.event_type
    schema["x-schema-version"] = cls.schema_version
    return schema


def file_name(cls: type[EventPayload]) -> str:
    return f"{cls.event_type}.v{cls.schema_version}.json"


def generate(out: Path = SCHEMA_DIR) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for cls in registered_events().values():
        path = out / file_name(cls)
        path.write_text(json.dumps(schema_of(cls), indent=2, ensure_ascii=False, sort_keys=True) + "\n")
        written.append(path)
    (out.parent / "asyncapi.json").write_text(json.dumps(asyncapi(), indent=2, ensure_ascii=False) + "\n")
    return written


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref and ref.startswith("#/$defs/"):
        return schema.get("$defs", {}).get(ref.split("/")[-1], {})
    return node


def _types(schema: dict[str, Any], node: dict[str, Any]) -> set[str]:
    node = _resolve(schema, node)
    if "anyOf" in node:
        out: set[str] = set()
        for sub in node["anyOf"]:
            out |= _types(schema, sub)
        return out
    if "enum" in node:
        return {f"enum:{v}" for v in node["enum"]}
    if "const" in node:
        return {f"enum:{node['const']}"}
    t = node.get("type")
    if isinstance(t, list):
        return set(t)
    if t:
        return {t}
    return {"object" if "properties" in node else "any"}


def incompatibilities(old: dict[str, Any], new: dict[str, Any], path: str = "") -> list[str]:
    """Why data written with ``new`` could not be read by a reader built on ``old``; and why data
    written with ``old`` (events already on the topics) could not be read by ``new``."""
    problems: list[str] = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_req, new_req = set(old.get("required", [])), set(new.get("required", []))
    for name in sorted(old_req):
        if name not in new_props:
            problems.append(f"{path}{name}: required by readers but no longer produced")
        elif name not in new_req and name in old_req:
            problems.append(f"{path}{name}: required by readers but now optional for writers")
    for name in sorted(new_req - old_req):
        problems.append(f"{path}{name}: newly required; events already on the topics lack it")
    for name, old_node in old_props.items():
        if name not in new_props:
            continue
        ot, nt = _types(old, old_node), _types(new, new_props[name])
        if "any" in ot:
            continue
        widened = nt - ot - {"null"} if "null" not in ot else nt - ot
        # an enum may gain values only if readers tolerate them; we treat new values as breaking
        if widened and not (ot & {"number"} and nt <= {"number", "integer", "null"}):
            problems.append(f"{path}{name}: type {sorted(ot)} became {sorted(nt)}")
        o_res, n_res = _resolve(old, old_node), _resolve(new, new_props[name])
        if "properties" in o_res and "properties" in n_res:
            problems += incompatibilities(
                {**o_res, "$defs": old.get("$defs", {})}, {**n_res, "$defs": new.get("$defs", {})},
                f"{path}{name}.",
            )
    return problems


def _upcast_from(name: str) -> bool:
    """A committed older version stays readable when upcasters bring it to the current version."""
    from civicgrid_contracts.envelope import has_upcasters

    event_type, _, rest = name.removesuffix(".json").rpartition(".v")
    events = registered_events()
    return rest.isdigit() and event_type in events and int(rest) < events[event_type].schema_version \
        and has_upcasters(event_type, int(rest))


def check(schema_dir: Path = SCHEMA_DIR) -> list[str]:
    problems: list[str] = []
    current = {file_name(c): schema_of(c) for c in registered_events().values()}
    for path in sorted(schema_dir.glob("*.json")):
        committed = json.loads(path.read_text())
        new = current.get(path.name)
        if new is None:
            if not _upcast_from(path.name):
                problems.append(f"{path.name}: event type/version removed; readers of it would break")
            continue
        problems += [f"{path.name}: {p}" for p in incompatibilities(committed, new)]
    for name in sorted(set(current) - {p.name for p in schema_dir.glob("*.json")}):
        problems.append(f"{name}: not committed; run `make schemas`")
    return problems


def asyncapi() -> dict[str, Any]:
    """An AsyncAPI 3.0 document of the whole bus (CloudEvents Kafka binary binding)."""
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    events = registered_events()
    for spec in topics.ALL_TOPICS:
        msgs = {}
        for et in spec.event_types:
            cls = events[et]
            mname = et.replace(".", "_")
            messages[mname] = {
                "name": et,
                "title": cls.__name__,
                "summary": (cls.__doc__ or "").strip().split("\n")[0],
                "contentType": "application/json",
                "headers": {"type": "object", "properties": {
                    h: {"type": "string"} for h in (
                        "ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "ce_subject",
                        "ce_correlationid", "ce_causationid", "ce_schemaversion", "ce_traceparent", "ce_tracestate")
                }},
                "payload": {"$ref": f"schemas/{file_name(cls)}"},
                "bindings": {"kafka": {"key": {"type": "string", "description": spec.key}}},
            }
            msgs[mname] = {"$ref": f"#/components/messages/{mname}"}
        channels[spec.name] = {
            "address": spec.name,
            "description": spec.description,
            "messages": msgs,
            "bindings": {"kafka": {"topic": spec.name, "partitions": spec.partitions,
                                   "topicConfiguration": {"retention.ms": int(spec.config.get("retention.ms", -1))}}},
        }
        if spec.event_types:
            operations[f"publish_{spec.name}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{spec.name}"},
                "summary": f"{spec.owner} publishes",
            }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "civicgrid event bus", "version": "1.0.0",
                 "description": "Every event of civicgrid, as CloudEvents in the Kafka binary binding."},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def main() -> None:
    cmd = sys.argv[1] if len(sys.argv) > 1 else "check"
    if cmd == "generate":
        for p in generate():
            print(p)
    elif cmd == "check":
        problems = check()
        for p in problems:
            print(p)
        sys.exit(1 if problems else 0)
    else:
        sys.exit("usage: python -m civicgrid_contracts.schemas generate|check")


if __name__ == "__main__":
    main()
