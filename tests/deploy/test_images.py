"""The image recipes, checked statically (no Docker engine here): built from uv.lock in a build stage,
only the virtual environment in the final one (the console: also its npm assets, built from their
lock file in a stage of their own), a numeric user, a health check, pinned base images, and a build
context without the repository's history, environments or local data. docker-compose.yml builds
every service from them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "service.Dockerfile"
CONSOLE_DOCKERFILE = ROOT / "services" / "console" / "Dockerfile"
SERVICES = ("intake", "grid", "matching", "audit")


def stages(dockerfile: Path = DOCKERFILE) -> list[str]:
    return re.split(r"^FROM ", dockerfile.read_text(), flags=re.M)[1:]


def assert_built_from_the_lock(build: str, package: str) -> None:
    assert f"uv sync --frozen --no-dev --no-editable --package {package}" in build
    assert re.search(r"pip install .*uv==[0-9.]+", build)  # the pinned uv


def assert_runs_as_a_numeric_user_with_a_health_check(final: str) -> None:
    assert re.search(r"^USER \d+:\d+$", final, flags=re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*/health/live", final, flags=re.M)


def assert_base_images_pinned(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert "latest" not in text
    for image in re.findall(r"^ARG \w+_IMAGE=(\S+)$", text, flags=re.M):
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+(-[\w.]+)?", image), f"{image}: a full version, not a moving tag"
    for base in re.findall(r"^FROM (\S+)", text, flags=re.M):
        assert base.startswith("${"), f"FROM {base}: the pinned image comes from an ARG above"


def test_multi_stage_from_the_lock_with_only_runtime_files_and_a_numeric_user():
    build, final = stages()
    assert_built_from_the_lock(build, '"civicgrid-${SERVICE}"')
    copies = re.findall(r"^COPY (.*)$", final, flags=re.M)
    assert copies == ["--from=build /app/.venv /app/.venv"]
    assert_runs_as_a_numeric_user_with_a_health_check(final)
    assert_base_images_pinned(DOCKERFILE)


def test_the_console_image_is_built_the_same_way_plus_its_npm_assets_from_their_lock():
    assets, build, final = stages(CONSOLE_DOCKERFILE)
    assert "package-lock.json" in assets and re.search(r"^RUN npm ci --omit=dev", assets, flags=re.M)
    assert "npm install" not in assets, "npm ci installs exactly the lock file; npm install may change it"
    assert_built_from_the_lock(build, "civicgrid-console")
    copies = re.findall(r"^COPY (.*)$", final, flags=re.M)
    assert copies == ["--from=build /app/.venv /app/.venv", "--from=assets /assets/node_modules /app/assets"]
    assert re.search(r"CONSOLE_ASSETS_DIR=/app/assets", final)
    assert_runs_as_a_numeric_user_with_a_health_check(final)
    assert_base_images_pinned(CONSOLE_DOCKERFILE)


def test_the_build_context_leaves_out_history_environments_and_local_data():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", "**/.venv", ".run", "**/__pycache__", "**/.pytest_cache", "**/node_modules"} <= ignored


def test_compose_builds_every_service_from_the_recipe():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for svc in SERVICES:
        build = compose[svc]["build"]
        assert build["dockerfile"] == "deploy/docker/service.Dockerfile" and build["args"]["SERVICE"] == svc
        assert compose[svc]["read_only"] and compose[svc]["user"] == "10001:10001"
    console = compose["console"]
    assert console["build"]["dockerfile"] == "services/console/Dockerfile"
    assert console["read_only"] and console["user"] == "10001:10001"
    # outside development the console signs staff in only at the provider, which the services trust too
    env = console["environment"]
    for name in ("CONSOLE_SESSION_SECRET", "CONSOLE_PUBLIC_URL", "CIVICGRID_OIDC_ISSUER", "CIVICGRID_AUTH_SECRET"):
        assert name in env, name
    assert env["CIVICGRID_ENV"] == "production"
    for svc in SERVICES:
        assert compose[svc]["environment"]["CIVICGRID_OIDC_ISSUER"] == env["CIVICGRID_OIDC_ISSUER"]
