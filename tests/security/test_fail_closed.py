"""Fail closed: outside development mode no service starts on a missing or built-in development
secret, and the error names every such variable at once (docs/adr/0400-fail-closed-secrets.md)."""

from __future__ import annotations

import hashlib
import importlib
import os
import secrets
import subprocess

import pytest

from civicgrid_audit.settings import AuditSettings
from civicgrid_grid.settings import GridSettings
from civicgrid_intake.settings import IntakeSettings
from civicgrid_matching.settings import MatchingSettings
from civicgrid_runtime.settings import DEV_AUTH_SECRET
from tests.support.platform import BIN, ROOT

#: every secret of every service, with its built-in development value
SECRETS = {
    "intake": {"CIVICGRID_AUTH_SECRET": DEV_AUTH_SECRET,
               "INTAKE_CONTACT_KEY": "civicgrid-dev-contact-key-change-me",
               "INTAKE_REPORTER_KEY": "civicgrid-dev-reporter-key-change-me",
               "INTAKE_TOKEN_KEY": "civicgrid-dev-token-key-change-me"},
    "grid": {"CIVICGRID_AUTH_SECRET": DEV_AUTH_SECRET},
    "matching": {"CIVICGRID_AUTH_SECRET": DEV_AUTH_SECRET},
    "audit": {"CIVICGRID_AUTH_SECRET": DEV_AUTH_SECRET,
              "AUDIT_SIGNING_KEY": hashlib.sha256(b"civicgrid-audit-development-key").hexdigest()},
}
SETTINGS = {"intake": IntakeSettings, "grid": GridSettings, "matching": MatchingSettings, "audit": AuditSettings}


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any secret or mode, plus ``extra``."""
    names = {n for s in SECRETS.values() for n in s} | {"CIVICGRID_ENV"}
    env = {k: v for k, v in os.environ.items() if k not in names}
    # nothing is reachable here: a service that got past its settings would fail on the broker instead
    env.update({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "MONGODB_URL": "mongodb://127.0.0.1:1/"}, **extra)
    return env


def _serve_in_process(svc: str, env: dict[str, str], monkeypatch, capsys) -> tuple[int, str]:
    """``civicgrid-<svc> serve`` through the service's own command function, in this process (a
    process start costs ~2 s of imports; the installed command is started once, below)."""
    for name in [*os.environ]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    main = importlib.import_module(f"civicgrid_{svc}.entrypoints.cli").main
    with pytest.raises(SystemExit) as ended:
        main(["serve", "--port", "1"])
    return ended.value.code, capsys.readouterr().err


@pytest.mark.parametrize("svc", list(SECRETS))
def test_serve_refuses_missing_secrets_naming_each(svc, monkeypatch, capsys):
    status, stderr = _serve_in_process(svc, _clean_env(CIVICGRID_ENV="production"), monkeypatch, capsys)
    assert status == 2, stderr
    for name in SECRETS[svc]:
        assert name in stderr, (name, stderr)
    assert "Traceback" not in stderr


def test_the_installed_command_refuses_to_start_and_says_why():
    """The real process: the installed ``civicgrid-intake`` exits with status 2, naming every
    missing secret, and no traceback."""
    proc = subprocess.run([str(BIN / "civicgrid-intake"), "serve", "--port", "1"], cwd=ROOT,
                          env=_clean_env(CIVICGRID_ENV="production"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert all(name in proc.stderr for name in SECRETS["intake"]) and "Traceback" not in proc.stderr


@pytest.mark.parametrize("svc", list(SECRETS))
def test_development_values_are_refused_even_when_set_explicitly(monkeypatch, svc):
    for name, value in SECRETS[svc].items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CIVICGRID_ENV")  # unset: production is the default
    with pytest.raises(ValueError) as refused:
        SETTINGS[svc]()
    assert all(name in str(refused.value) for name in SECRETS[svc]), refused.value


@pytest.mark.parametrize("svc", [s for s in SECRETS if len(SECRETS[s]) > 1])
def test_one_development_secret_among_real_ones_is_named_alone(svc, monkeypatch, capsys):
    names = list(SECRETS[svc])
    real = {n: secrets.token_hex(32) for n in names}
    left = names[-1]
    status, stderr = _serve_in_process(svc, _clean_env(CIVICGRID_ENV="production", **{**real, left: SECRETS[svc][left]}),
                                       monkeypatch, capsys)
    assert status == 2, stderr
    assert left in stderr and not any(n in stderr for n in names[:-1]), stderr


@pytest.mark.parametrize("svc", list(SECRETS))
def test_empty_secret_counts_as_missing(monkeypatch, svc):
    for name in SECRETS[svc]:
        monkeypatch.setenv(name, secrets.token_hex(32))
    monkeypatch.setenv("CIVICGRID_AUTH_SECRET", "")
    monkeypatch.setenv("CIVICGRID_ENV", "production")
    with pytest.raises(ValueError, match="CIVICGRID_AUTH_SECRET"):
        SETTINGS[svc]()


@pytest.mark.parametrize("svc", list(SECRETS))
def test_real_secrets_are_accepted_and_development_mode_accepts_the_built_in_ones(monkeypatch, svc):
    for name in SECRETS[svc]:
        monkeypatch.setenv(name, secrets.token_hex(32))
    monkeypatch.setenv("CIVICGRID_ENV", "production")
    s = SETTINGS[svc]()
    assert not s.development and s.development_secrets_in_use() == []
    for name in SECRETS[svc]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CIVICGRID_ENV", "development")
    assert sorted(SETTINGS[svc]().development_secrets_in_use()) == sorted(SECRETS[svc])


def test_the_table_above_lists_every_secret_of_every_service():
    """A secret added to a service's settings must be added here (and to the README and compose file)."""
    for svc, cls in SETTINGS.items():
        assert sorted(cls(CIVICGRID_ENV="development").development_secrets_in_use()) == sorted(SECRETS[svc])
