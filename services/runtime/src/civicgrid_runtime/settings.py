"""Settings from the environment (pydantic-settings), one prefix per service.

Every service subclasses ``ServiceSettings`` with its own ``env_prefix`` (``INTAKE_``, ``GRID_``...).
The two infrastructure addresses are also read unprefixed (``KAFKA_BOOTSTRAP_SERVERS``,
``MONGODB_URL``) so one exported pair configures the whole platform. A bad value fails loudly at
start-up with the variable's name.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CIVICGRID_", extra="ignore", frozen=True)

    service_name: str = "civicgrid"
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices("kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    mongodb_url: str = Field(
        default="mongodb://127.0.0.1:27027/?retryWrites=false",  # the local embedded store (no retryable writes)
        validation_alias=AliasChoices("mongodb_url", "MONGODB_URL"),
    )
    topic_replication_factor: int = Field(default=1, ge=1, le=5, description="3 on a real cluster")
    database: str = Field(default="", description="Database name; defaults to civicgrid_<service>")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    consumer_group: str = ""
    consumer_max_batch: int = Field(default=500, ge=1, le=10000)
    consumer_max_attempts: int = Field(default=5, ge=1, le=100)
    consumer_backoff_seconds: float = Field(default=0.1, gt=0, le=60)
    consumer_commit_interval_seconds: float = Field(
        default=0.1, ge=0, le=10, description="Least time between two offset commits of a consumer: at 200 small "
                                              "batches a second, a commit after each cost the broker and the "
                                              "service more than the batches; a crash redelivers at most this "
                                              "much more, to idempotent handlers")
    consumer_fetch_max_wait_ms: int = Field(
        default=10, ge=0, le=1000, description="Longest a fetch waits on the broker for consumer_fetch_min_bytes")
    consumer_fetch_min_bytes: int = Field(
        default=3000, ge=1, le=1_048_576,
        description="Bytes a fetch waits for (a few events), at most consumer_fetch_max_wait_ms: at 200 events a "
                    "second a fetch per event, each decoding every assigned partition in Python, cost grid a fifth "
                    "of its CPU; a few events per fetch trade ~5 ms of p50 for grid's p99 at 200/s")
    consumer_idle_fetch_max_wait_ms: int = Field(
        default=500, ge=0, le=30000,
        description="While a consumer's topics are idle its fetches return at the first byte and otherwise wait "
                    "this long on the broker (the busy parameters above resume with the first events): busy "
                    "fetches on idle topics cost the broker and each service about a tenth of a core")
    consumer_instance: str = Field(default="", description="Stable member id for static group membership")
    outbox_sweep_seconds: float = Field(default=1.0, gt=0, le=600)
    auth_secret: SecretStr = Field(
        default=SecretStr("civicgrid-development-secret-change-me"),
        validation_alias=AliasChoices("auth_secret", "CIVICGRID_AUTH_SECRET"),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _servers(cls, v: str) -> str:
        for hp in v.split(","):
            host, _, port = hp.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {v!r}")
        return v

    @field_validator("mongodb_url")
    @classmethod
    def _mongo(cls, v: str) -> str:
        if not v.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError(f"expected a mongodb:// URL, got {v!r}")
        return v

    @property
    def database_name(self) -> str:
        return self.database or f"civicgrid_{self.service_name}"

    @property
    def group_id(self) -> str:
        return self.consumer_group or self.service_name

    @property
    def source(self) -> str:
        """CloudEvents ``source`` of everything this service publishes."""
        return f"/civicgrid/{self.service_name}"
