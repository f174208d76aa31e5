"""The image recipe, checked statically (no Docker engine here): built from uv.lock in a build stage,
only the virtual environment in the final one, a numeric user, a health check, and a build context
without the repository's history, environments or local data. docker-compose.yml builds every
service from it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "service.Dockerfile"
SERVICES = ("intake", "grid", "matching", "audit")


def stages() -> list[str]:
    return re.split(r"^FROM ", DOCKERFILE.read_text(), flags=re.M)[1:]


def test_multi_stage_from_the_lock_with_only_runtime_files_and_a_numeric_user():
    build, final = stages()
    assert "uv sync --frozen --no-dev --no-editable --package" in build
    assert re.search(r"pip install .*uv==[0-9.]+", build)  # the pinned uv
    copies = re.findall(r"^COPY (.*)$", final, flags=re.M)
    assert copies == ["--from=build /app/.venv /app/.venv"]
    assert re.search(r"^USER \d+:\d+$", final, flags=re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*/health/live", final, flags=re.M)
    assert "latest" not in DOCKERFILE.read_text()


def test_the_build_context_leaves_out_history_environments_and_local_data():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", "**/.venv", ".run", "**/__pycache__", "**/.pytest_cache", "**/node_modules"} <= ignored


def test_compose_builds_every_service_from_the_recipe():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for svc in SERVICES:
        build = compose[svc]["build"]
        assert build["dockerfile"] == "deploy/docker/service.Dockerfile" and build["args"]["SERVICE"] == svc
        assert compose[svc]["read_only"] and compose[svc]["user"] == "10001:10001"
