"""Settings from the environment (pydantic-settings), one prefix per service.

Every service subclasses ``ServiceSettings`` with its own ``env_prefix`` (``INTAKE_``, ``GRID_``...).
The two infrastructure addresses are also read unprefixed (``KAFKA_BOOTSTRAP_SERVERS``,
``MONGODB_URL``) so one exported pair configures the whole platform. A bad value fails loudly at
start-up with the variable's name.

Fail closed: outside ``CIVICGRID_ENV=development`` a service refuses to start while any secret --
every ``SecretStr`` setting whose default is a built-in development value -- is missing, empty or
equal to that value, naming every such variable in one error (docs/adr/0400-fail-closed-secrets.md).
A secret field added later takes part by being a ``SecretStr`` with a development default.
"""

from __future__ import annotations

import sys
from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_AUTH_SECRET = "civicgrid-development-secret-change-me"
DEVELOPMENT = "development"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CIVICGRID_", extra="ignore", frozen=True)

    service_name: str = "civicgrid"
    env: Literal["development", "production"] = Field(
        default="production", validation_alias=AliasChoices("CIVICGRID_ENV"),  # not ENV: sh reads that
        description="'development' accepts the built-in development secrets; anything else refuses them")
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices("kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    mongodb_url: str = Field(
        default="mongodb://127.0.0.1:27027/",
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
        default=SecretStr(DEV_AUTH_SECRET),
        validation_alias=AliasChoices("auth_secret", "CIVICGRID_AUTH_SECRET"),
        description="HS256 key signing staff bearer tokens",
    )
    console_origin: str = Field(
        default="http://127.0.0.1:8100", validation_alias=AliasChoices("console_origin", "CIVICGRID_CONSOLE_ORIGIN"),
        description="The one browser origin CORS lets call the APIs (the staff console)")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024,
                                description="Largest request body; larger ones get 413 before anything is parsed")
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

    @model_validator(mode="after")
    def _no_development_secrets(self):
        if self.env != DEVELOPMENT:
            unsafe = self.development_secrets_in_use()
            if unsafe:
                raise ValueError(
                    f"refusing to start outside development mode (CIVICGRID_ENV={self.env}): "
                    f"set {', '.join(unsafe)} -- missing or a built-in development value "
                    f"(CIVICGRID_ENV=development accepts them)")
        return self

    def development_secrets_in_use(self) -> list[str]:
        """The environment variable of every secret that is empty or still its built-in development value."""
        out = []
        for name, info in type(self).model_fields.items():
            if not isinstance(info.default, SecretStr):
                continue
            value = getattr(self, name)
            if value is None or value.get_secret_value() in ("", info.default.get_secret_value()):
                out.append(self.variable(name))
        return out

    @classmethod
    def variable(cls, name: str) -> str:
        """The environment variable that sets field ``name``."""
        alias = cls.model_fields[name].validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str) and choice.isupper():
                    return choice
        return f"{cls.model_config.get('env_prefix', '')}{name}".upper()

    @property
    def development(self) -> bool:
        return self.env == DEVELOPMENT

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


S = TypeVar("S", bound=ServiceSettings)


def load_settings(cls: type[S], **overrides) -> S:
    """Settings for a command: a bad or unsafe value ends the process with the variables named
    (a short message on stderr, exit status 2) rather than a traceback."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            field = ".".join(str(p) for p in e["loc"])
            where = f"{cls.variable(field)}: " if field in cls.model_fields else ""
            lines.append(f"  {where}{e['msg'].removeprefix('Value error, ')}")
        print(f"civicgrid-{cls.model_fields['service_name'].default}: invalid configuration\n" + "\n".join(lines),
              file=sys.stderr)
        raise SystemExit(2) from None
