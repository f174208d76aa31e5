"""docker-compose.yml is valid against the Compose specification's JSON Schema (vendored), and the
check fails on a deliberately broken copy."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_docker_compose_is_valid(validate):
    validate.check_compose(ROOT / "docker-compose.yml")


def test_a_broken_compose_file_fails(validate, tmp_path):
    broken = tmp_path / "docker-compose.yml"
    text = (ROOT / "docker-compose.yml").read_text()
    assert "condition: service_healthy" in text
    broken.write_text(text.replace("condition: service_healthy", "condition: service_ready", 1))
    with pytest.raises(validate.Invalid, match="service_ready"):
        validate.check_compose(broken)
