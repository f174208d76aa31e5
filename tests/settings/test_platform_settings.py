"""Settings that mean what they say: a platform-wide setting has one name that every service reads
the same way, and a variable under a civicgrid prefix that no setting reads stops the service at
start, naming it (it used to be ignored: ``CIVICGRID_TOPIC_REPLICATION_FACTOR=3`` gave every topic
one replica on a production cluster)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from civicgrid_audit.settings import AuditSettings
from civicgrid_grid.settings import GridSettings
from civicgrid_intake.settings import IntakeSettings
from civicgrid_matching.settings import MatchingSettings
from civicgrid_runtime.settings import unread_variables

SERVICE_SETTINGS = (IntakeSettings, GridSettings, MatchingSettings, AuditSettings)
PLATFORM = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka_bootstrap_servers", "k1:9092,k2:9092"),
    "MONGODB_URL": ("mongodb_url", "mongodb://m1,m2/?replicaSet=rs0"),
    "CIVICGRID_TOPIC_REPLICATION_FACTOR": ("topic_replication_factor", 3),
}


@pytest.mark.parametrize("settings_class", SERVICE_SETTINGS, ids=lambda c: c.__name__)
def test_every_service_reads_the_platform_settings_under_one_name(settings_class, monkeypatch):
    for variable, (_, value) in PLATFORM.items():
        monkeypatch.setenv(variable, str(value))
    monkeypatch.setenv("CIVICGRID_AUTH_SECRET", "a-platform-signing-key-of-enough-length!")
    s = settings_class()
    for field, value in PLATFORM.values():
        assert getattr(s, field) == value
    assert s.auth_secret.get_secret_value() == "a-platform-signing-key-of-enough-length!"


@pytest.mark.parametrize("settings_class", SERVICE_SETTINGS, ids=lambda c: c.__name__)
def test_a_platform_setting_under_a_service_prefix_fails_naming_it(settings_class, monkeypatch):
    prefix = settings_class.model_config["env_prefix"]
    monkeypatch.setenv(f"{prefix}TOPIC_REPLICATION_FACTOR", "3")
    with pytest.raises(ValidationError, match=f"{prefix}TOPIC_REPLICATION_FACTOR: no setting reads"):
        settings_class()


def test_a_misspelt_variable_fails_naming_it(monkeypatch):
    monkeypatch.setenv("GRID_ROSTER_CACHE_SECOND", "5")
    monkeypatch.setenv("CIVICGRID_TOPIC_REPLICATION_FACTORS", "3")
    with pytest.raises(ValidationError) as caught:
        GridSettings()
    assert "CIVICGRID_TOPIC_REPLICATION_FACTORS, GRID_ROSTER_CACHE_SECOND: no setting reads" in str(caught.value)


def test_other_services_variables_and_the_local_infrastructure_are_left_alone():
    environ = {"GRID_ROSTER_CACHE_SECONDS": "2", "AUDIT_SCAN_SECONDS": "1", "CIVICGRID_STATE_DIR": "/x",
               "INTAKE_HTTP_PORT": "8101", "KAFKA_BOOTSTRAP_SERVERS": "k:9092"}
    assert unread_variables(IntakeSettings, environ) == set()
    assert unread_variables(IntakeSettings, {"intake_http_prot": "1"}) == {"INTAKE_HTTP_PROT"}


def test_settings_nested_or_named_by_alias_choices_count_as_read():
    from pydantic import AliasChoices, Field
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class Provider(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="CIVICGRID_PROVIDER_")
        issuer: str = ""

    class Example(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="GRID_")
        mode: str = Field(default="", validation_alias=AliasChoices("mode", "CIVICGRID_MODE"))
        provider: Provider = Field(default_factory=Provider)

    environ = {"CIVICGRID_MODE": "x", "CIVICGRID_PROVIDER_ISSUER": "https://id", "CIVICGRID_PROVIDER_ISUER": "?"}
    assert unread_variables(Example, environ) == {"CIVICGRID_PROVIDER_ISUER"}
