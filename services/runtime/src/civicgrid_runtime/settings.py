"""Settings from the environment (pydantic-settings), one prefix per service.

Every service subclasses ``ServiceSettings`` with its own ``env_prefix`` (``INTAKE_``, ``GRID_``...).
Platform-wide settings have one name that every service reads the same way, whatever its prefix
(``platform_setting``): the infrastructure addresses ``KAFKA_BOOTSTRAP_SERVERS`` and ``MONGODB_URL``,
``CIVICGRID_TOPIC_REPLICATION_FACTOR`` and ``CIVICGRID_AUTH_SECRET``. A bad value, or a variable
under the service's own prefix or ``CIVICGRID_`` that no setting reads (a typo, or a platform-wide
setting given under a service's prefix), fails loudly at start-up with the variable's name.

Fail closed: outside ``CIVICGRID_ENV=development`` a service refuses to start while any secret --
every ``SecretStr`` setting whose default is a built-in development value -- is missing, empty or
equal to that value, naming every such variable in one error (docs/adr/0400-fail-closed-secrets.md).
A secret field added later takes part by being a ``SecretStr`` with a development default.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_AUTH_SECRET = "civicgrid-development-secret-change-me"
DEVELOPMENT = "development"

PLATFORM_PREFIX = "CIVICGRID_"

#: civicgrid-prefixed variables read outside the settings: the local infrastructure (deploy/local), where
#: the services listen (the demo's simulator and the console), the test harness and benchmarks, fault
#: injection (``faults``) and store profiling (``storeprofile``)
READ_OUTSIDE_SETTINGS = frozenset({
    "CIVICGRID_STATE_DIR", "CIVICGRID_CACHE_DIR", "CIVICGRID_KAFKA_PORT", "CIVICGRID_KAFKA_CONTROLLER_PORT",
    "CIVICGRID_KAFKA_HEAP", "CIVICGRID_STORE_PORT", "CIVICGRID_STORE_GOGC", "CIVICGRID_STORE_SQLITE_PARAMS",
    "CIVICGRID_STORE_PPROF", "CIVICGRID_STORE_PROFILE", "CIVICGRID_CRASH_AT", "CIVICGRID_TEST_INFRA_BANNER",
    "CIVICGRID_KEEP_E2E_DATA", "CIVICGRID_FUZZ_EXAMPLES", "CIVICGRID_FUZZ_SEED", "MATCHING_BENCH_BATCH", "MATCHING_BENCH_SWEEP",
    "CIVICGRID_INTAKE_URL", "CIVICGRID_GRID_URL", "CIVICGRID_MATCHING_URL", "CIVICGRID_AUDIT_URL",
    "CIVICGRID_DEX_PORT", "CIVICGRID_JAEGER_URL", "CIVICGRID_JAEGER_OTLP_ENDPOINT", "CIVICGRID_JAEGER_UI_PORT",
    "CIVICGRID_JAEGER_OTLP_PORT", "CIVICGRID_JAEGER_QUERY_GRPC_PORT",
})


def platform_setting(env_name: str, default: Any, **kwargs: Any) -> Any:
    """A setting of the whole platform: read from ``env_name`` alone, by every service alike (a
    service's prefix does not apply; given under it, the variable is refused at start)."""
    return Field(default=default, validation_alias=env_name, **kwargs)


ACCEPTED_TOKEN_ALGORITHMS = ("RS256", "ES256")


class OidcSettings(BaseSettings):
    """The city's OpenID Connect provider, platform-wide (``CIVICGRID_OIDC_*``); no issuer, no OIDC."""

    model_config = SettingsConfigDict(env_prefix="CIVICGRID_OIDC_", extra="ignore", frozen=True)

    issuer: str = Field(default="", description="Issuer URL exactly as in the provider's tokens ('' = OIDC off)")
    audience: str = Field(default="civicgrid", description="Accepted 'aud' values, comma-separated")
    algorithms: str = Field(default="RS256,ES256", description="Accepted signature algorithms (RS256, ES256)")
    subject_claim: str = Field(default="sub", description="Claim naming the staff member (their staff id)")
    role_claim: str = Field(default="civicgrid_role", description="Claim carrying the role, if the provider sets one")
    area_claim: str = Field(default="area", description="Claim carrying the area scope, if the provider sets one")
    groups_claim: str = Field(default="groups", description="Claim listing the user's groups")
    role_group_prefix: str = Field(default="civicgrid-role:", description="Group 'civicgrid-role:<role>' grants "
                                                                          "<role> when the role claim is absent")
    area_group_prefix: str = Field(default="civicgrid-area:", description="Group 'civicgrid-area:<code>' scopes "
                                                                          "to <code> when the area claim is absent")
    leeway_seconds: int = Field(default=30, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat")
    jwks_cache_seconds: float = Field(default=300, ge=10, le=86400, description="Key set kept this long")
    jwks_min_refetch_seconds: float = Field(default=30, ge=1, le=3600,
                                            description="Least time between two key set fetches for unknown kids")
    http_timeout_seconds: float = Field(default=5, gt=0, le=60)
    client_id: str = Field(default="civicgrid-cli", description="civicgrid-token --oidc: the client it signs in as")
    client_secret: SecretStr = Field(default=SecretStr(""), description="civicgrid-token --oidc: that client's secret")
    scope: str = Field(default="openid,profile,groups", description="civicgrid-token --oidc: scopes, comma-separated")

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        loopback = v.startswith(("http://127.0.0.1:", "http://localhost:", "http://[::1]:"))
        if v and not (v.startswith("https://") or loopback):
            raise ValueError(f"the issuer must be an https:// URL (plain http only on loopback), got {v!r}")
        return v

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, v: str) -> str:
        bad = [a for a in v.split(",") if a.strip() not in ACCEPTED_TOKEN_ALGORITHMS]
        if bad or not v.strip():
            raise ValueError(f"only {', '.join(ACCEPTED_TOKEN_ALGORITHMS)} are accepted, got {v!r}")
        return v

    @property
    def algorithm_list(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.algorithms.split(","))

    @property
    def audience_list(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.audience.split(",") if a.strip())


class KafkaTransportSettings(BaseSettings):
    """How every Kafka client of the platform connects (``CIVICGRID_KAFKA_*``; docs/adr/0502)."""

    model_config = SettingsConfigDict(env_prefix="CIVICGRID_KAFKA_", extra="ignore", frozen=True)

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    ssl_cafile: str = Field(default="", description="CA bundle (PEM) the brokers' certificates chain to; '' = system")
    ssl_certfile: str = Field(default="", description="Client certificate (PEM), for brokers that ask for one")
    ssl_keyfile: str = Field(default="", description="Its private key (PEM)")
    ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _complete(self):
        if self.security_protocol.startswith("SASL_") and not (self.sasl_username and
                                                              self.sasl_password.get_secret_value()):
            raise ValueError(f"{self.security_protocol} needs CIVICGRID_KAFKA_SASL_USERNAME and _SASL_PASSWORD")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("CIVICGRID_KAFKA_SSL_CERTFILE and _SSL_KEYFILE go together")
        return self

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        opts: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            ctx = create_ssl_context(cafile=self.ssl_cafile or None, certfile=self.ssl_certfile or None,
                                     keyfile=self.ssl_keyfile or None)
            ctx.check_hostname = self.ssl_check_hostname
            opts["ssl_context"] = ctx
        if self.security_protocol.startswith("SASL_"):
            opts.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                        sasl_plain_password=self.sasl_password.get_secret_value())
        return opts


class StoreTransportSettings(BaseSettings):
    """TLS and authentication to MongoDB (``CIVICGRID_MONGODB_*``), beside whatever MONGODB_URL says."""

    model_config = SettingsConfigDict(env_prefix="CIVICGRID_MONGODB_", extra="ignore", frozen=True)

    tls: bool = False
    tls_ca_file: str = Field(default="", description="CA bundle (PEM) of the servers' certificates; '' = system")
    tls_certificate_key_file: str = Field(default="", description="Client certificate and key (PEM), for x.509")
    auth_mechanism: Literal["", "SCRAM-SHA-256", "SCRAM-SHA-1", "MONGODB-X509"] = ""
    username: str = ""
    password: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _complete(self):
        if self.auth_mechanism == "MONGODB-X509" and not (self.tls and self.tls_certificate_key_file):
            raise ValueError("MONGODB-X509 needs CIVICGRID_MONGODB_TLS=true and _TLS_CERTIFICATE_KEY_FILE")
        if self.auth_mechanism.startswith("SCRAM") and not (self.username and self.password.get_secret_value()):
            raise ValueError(f"{self.auth_mechanism} needs CIVICGRID_MONGODB_USERNAME and _PASSWORD")
        return self

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for pymongo's client (they override the URL's options of the same name)."""
        opts: dict[str, Any] = {}
        if self.tls:
            opts["tls"] = True
            if self.tls_ca_file:
                opts["tlsCAFile"] = self.tls_ca_file
            if self.tls_certificate_key_file:
                opts["tlsCertificateKeyFile"] = self.tls_certificate_key_file
        if self.auth_mechanism:
            opts["authMechanism"] = self.auth_mechanism
            if self.auth_mechanism.startswith("SCRAM"):
                opts.update(username=self.username, password=self.password.get_secret_value())
        return opts


class ServiceSettings(BaseSettings):
    # validate_by_name: code and tests still pass platform settings by field name
    model_config = SettingsConfigDict(env_prefix=PLATFORM_PREFIX, extra="ignore", frozen=True, validate_by_name=True)

    service_name: str = "civicgrid"
    env: Literal["development", "production"] = platform_setting(
        "CIVICGRID_ENV", "production",
        description="'development' accepts the built-in development secrets; anything else refuses them")
    kafka_bootstrap_servers: str = platform_setting("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    mongodb_url: str = platform_setting(
        "MONGODB_URL", "mongodb://127.0.0.1:27027/?retryWrites=false",  # the local embedded store: no retryable writes
    )
    topic_replication_factor: int = platform_setting("CIVICGRID_TOPIC_REPLICATION_FACTOR", 1, ge=1, le=5,
                                                     description="3 on a real cluster")
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
    auth_secret: SecretStr = platform_setting(
        "CIVICGRID_AUTH_SECRET", SecretStr(DEV_AUTH_SECRET),
        description="HS256 key of development staff tokens (accepted only in development mode)")
    console_origin: str = platform_setting("CIVICGRID_CONSOLE_ORIGIN", "http://127.0.0.1:8100",
                                           description="The one browser origin CORS lets call the APIs")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024,
                                description="Largest request body; larger ones get 413 before anything is parsed")
    otlp_endpoint: str = platform_setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT", "",
        description="Where spans go, OTLP over HTTP (the standard variable, read by every service); no span is "
                    "recorded when unset (trace context still flows in events and logs)")
    oidc: OidcSettings = Field(default_factory=OidcSettings, description="Staff sign-in (CIVICGRID_OIDC_*)")
    kafka_transport: KafkaTransportSettings = Field(default_factory=KafkaTransportSettings,
                                                    description="TLS and SASL to Kafka (CIVICGRID_KAFKA_*)")
    store_transport: StoreTransportSettings = Field(default_factory=StoreTransportSettings,
                                                    description="TLS and authentication to MongoDB (CIVICGRID_MONGODB_*)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _no_unread_variables(self) -> ServiceSettings:
        unread = sorted(unread_variables(type(self), os.environ))
        if unread:
            raise ValueError(f"{', '.join(unread)}: no setting reads this variable (a misspelt name, or a "
                             f"platform-wide setting given under a service's prefix); remove or rename it")
        return self

    @model_validator(mode="after")
    def _no_development_secrets(self) -> ServiceSettings:
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
        if isinstance(alias, str):
            return alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str) and choice.isupper():
                    return choice
        return f"{cls.model_config.get('env_prefix', '')}{name}".upper()

    @property
    def development(self) -> bool:
        return self.env == DEVELOPMENT

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


def variables_read(settings_class: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads (upper case, as compared), those of settings
    nested in it included (each under its own prefix)."""
    prefix = settings_class.model_config.get("env_prefix", "").upper()
    names: set[str] = set()
    for name, field in settings_class.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings):
            names |= variables_read(field.annotation)
        elif isinstance(field.validation_alias, str):
            names.add(field.validation_alias.upper())
        elif isinstance(field.validation_alias, AliasChoices):
            names |= {c.upper() for c in field.validation_alias.choices if isinstance(c, str)}
        else:
            names.add((prefix + name).upper())
    return names


def unread_variables(settings_class: type[BaseSettings], environ: Mapping[str, str]) -> set[str]:
    """Variables under the class's own prefix or the platform's that nothing reads. Other services'
    prefixes are left to them: one environment (``make run``, a test run) may carry every service's."""
    prefixes = {settings_class.model_config.get("env_prefix", "").upper(), PLATFORM_PREFIX}
    known = variables_read(settings_class) | READ_OUTSIDE_SETTINGS
    return {name for name in (n.upper() for n in environ)
            if name.startswith(tuple(prefixes)) and name not in known}


S = TypeVar("S", bound=ServiceSettings)


def load_settings(cls: type[S], **overrides: Any) -> S:
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
