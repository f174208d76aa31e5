"""The deployment checkers (deploy/validate.py) and the tools they run (helm, kubeconform: built once
from the Go module proxy into ~/.cache/civicgrid/bin by deploy/local/tools.sh)."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def validate():
    # a missing tool is built here (cached), never skipped: the checks are part of the suite
    subprocess.run(["bash", str(ROOT / "deploy/local/tools.sh")], check=True)
    return _load("civicgrid_deploy_validate", ROOT / "deploy/validate.py")
