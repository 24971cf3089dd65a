"""Service configuration, read once from the environment (docs/configuration.md).

Every knob is an ``LTV_*`` variable validated by pydantic at start-up, so a
typo such as ``LTV_PARTITIONS=abc`` stops the worker with one line naming the
variable instead of surfacing later as a confusing Kafka or Redis error.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from state.store.config import StoreConfig, mask_url

_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
#: Fields whose value an error message must never echo.
_SECRET_FIELDS = frozenset({"api_token", "kafka_sasl_password"})

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_SASL_FIELDS = ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
_TLS_FIELDS = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the variable."""


class Settings(BaseSettings):
    """All runtime configuration of a worker; field ``x`` is variable ``LTV_X``."""

    model_config = SettingsConfigDict(env_prefix="LTV_", extra="ignore", frozen=True)

    app_id: str = Field("ltv-stream", min_length=1, max_length=100)
    broker: str = "kafka://127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    partitions: int = Field(8, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=16)

    topic_purchases: str = "orders.purchases"
    topic_cancellations: str = "orders.cancellations"
    topic_feedback: str = "customers.feedback"
    topic_updates: str = "ltv.updates"
    topic_churn: str = "ltv.churn-risk"
    topic_dead_letter: str = "ltv.dead-letter"
    #: Compacted: the latest ltv.updates record of every customer, to bootstrap from.
    topic_customers: str = "ltv.customers"

    base_currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    fx_rates: Path | None = None
    value_basis: Literal["revenue", "margin"] = "revenue"
    default_margin: Decimal = Field(Decimal("1.0"), ge=0, le=1)
    horizon_days: int = Field(365, ge=1, le=36500)
    discount_rate: Decimal = Field(Decimal("0.10"), ge=0, le=1)
    risk_thresholds: Annotated[tuple[float, float], NoDecode] = (0.7, 0.3)
    cac: Annotated[dict[str, Decimal], NoDecode] = Field(default_factory=dict)
    api_token: str | None = Field(None, repr=False)
    clock: Literal["wall", "event"] = "wall"
    # The worker's asyncio event loop: the standard one, or uvloop (the
    # ``uvloop`` package, installed apart: ``pip install uvloop``).
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"

    data_dir: Path = Path("var/faust")
    max_message_bytes: int = Field(65536, ge=1024, le=16 * 1024 * 1024)
    pending_cancellation_days: int = Field(30, ge=0, le=3650)
    # Orders, cancellations and feedback events one customer may remember (state.customer): at
    # ~20 encoded bytes each, the top of the range still fits a 1 MB record.
    max_customer_events: int = Field(20_000, ge=100, le=40_000)
    # Seconds between periodic model fits in the worker group (streams.fit).
    fit_interval: float = Field(3600.0, ge=1.0, le=30 * 86400.0)
    # Days at the end of the history each fit holds out to choose the orders
    # model on (ltv.holdout); 0 skips the choice and values with MBG/NBD.
    fit_holdout_days: int = Field(90, ge=0, le=3650)
    # Seconds between ticks of the inactivity timer (streams.inactivity).
    inactivity_interval: float = Field(60.0, gt=0.0, le=86400.0)
    # Keep the group insights (docs/insights.md): each customer's contribution
    # in Redis and the partitions' sums. Off saves their CPU and Redis bytes.
    insights: bool = True
    # Seconds between refreshes of the insights gauges from Redis (streams.insights_api).
    insights_interval: float = Field(15.0, ge=1.0, le=86400.0)

    # Kafka client security (README "Secured clusters"); streams.kafka_security
    # turns these into the credentials of every Kafka client of the project.
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = Field(None, min_length=1)
    kafka_sasl_password: SecretStr | None = None
    # CA bundle to verify the brokers with (default: the system's trust store).
    kafka_ssl_cafile: FilePath | None = None
    # Client certificate (PEM) for brokers that require TLS client authentication;
    # the key may be in the same file or in LTV_KAFKA_SSL_KEYFILE.
    kafka_ssl_certfile: FilePath | None = None
    kafka_ssl_keyfile: FilePath | None = None

    @field_validator("app_id")
    @classmethod
    def _app_id_chars(cls, value: str) -> str:
        # The app id names the consumer group and prefixes every Redis key,
        # so it must be safe inside a Redis hash tag and a Kafka group id.
        if any(ch not in _ID_CHARS for ch in value):
            raise ValueError("only letters, digits, '.', '_' and '-' are allowed")
        return value

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        if not value.startswith("kafka://"):
            value = "kafka://" + value
        if value == "kafka://":
            raise ValueError("no bootstrap server given")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        # The store's own parser: what passes here is what the store accepts.
        StoreConfig.from_url(value)
        return value

    @field_validator("risk_thresholds", mode="before")
    @classmethod
    def _parse_thresholds(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",")]
            if len(parts) != 2:
                raise ValueError("expected two numbers 'low,medium', e.g. 0.7,0.3")
            return tuple(float(p) for p in parts)
        return value

    @field_validator("risk_thresholds")
    @classmethod
    def _ordered_thresholds(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, medium = value
        if not 0.0 <= medium < low <= 1.0:
            raise ValueError("need 0 <= medium < low <= 1 (P(alive) limits), e.g. 0.7,0.3")
        return value

    @field_validator("cac", mode="before")
    @classmethod
    def _parse_cac(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                parsed = json.loads(value, parse_float=Decimal, parse_int=Decimal)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not JSON: {exc.msg}") from None
            if not isinstance(parsed, dict):
                raise ValueError('expected a JSON object {"channel": cost}')
            return parsed
        return value

    @field_validator("cac")
    @classmethod
    def _non_negative_cac(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for channel, cost in value.items():
            if not cost.is_finite() or cost < 0:
                raise ValueError(f"cost of channel {channel!r} must be a number >= 0")
        return value

    @model_validator(mode="after")
    def _distinct_topics(self) -> Settings:
        names = [
            self.topic_purchases,
            self.topic_cancellations,
            self.topic_feedback,
            self.topic_updates,
            self.topic_churn,
            self.topic_dead_letter,
            self.topic_customers,
        ]
        if len(set(names)) != len(names):
            raise ValueError("LTV_TOPIC_* names must all differ")
        return self

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        problem = kafka_security_problem(self)
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def input_topics(self) -> tuple[str, str, str]:
        """The topics shops publish to (docs/input-events.md), co-partitioned by customer."""
        return (self.topic_purchases, self.topic_cancellations, self.topic_feedback)

    @property
    def topic_inactivity(self) -> str:
        """Internal topic of the inactivity timer, co-partitioned with the inputs.

        Named after the app id like Faust's own internal topics, so two
        deployments sharing a cluster never share it.
        """
        return f"{self.app_id}-inactivity"

    @property
    def bootstrap_servers(self) -> str:
        """Broker list without the ``kafka://`` scheme, for plain Kafka clients."""
        return ",".join(part.removeprefix("kafka://") for part in self.broker.split(";"))


def load_settings() -> Settings:
    """Read and validate the environment; raise SettingsError with a one-line message."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None


def kafka_security_problem(settings: Settings) -> str | None:
    """Why the LTV_KAFKA_* security settings do not fit together, or None.

    A setting that the chosen protocol would ignore is refused rather than
    dropped: a password set for a PLAINTEXT listener is a mistake that would
    otherwise surface as a confusing broker error, or not at all.
    """
    protocol = settings.kafka_security_protocol
    where = f"LTV_KAFKA_SECURITY_PROTOCOL={protocol}"
    sasl = protocol.startswith("SASL_")
    for name in _SASL_FIELDS:
        if sasl and getattr(settings, name) is None:
            return f"{where} needs LTV_{name.upper()}"
        if not sasl and getattr(settings, name) is not None:
            return f"LTV_{name.upper()} is set but {where} uses no SASL"
    if protocol not in ("SSL", "SASL_SSL"):
        for name in _TLS_FIELDS:
            if getattr(settings, name) is not None:
                return f"LTV_{name.upper()} is set but {where} uses no TLS"
    if settings.kafka_ssl_keyfile is not None and settings.kafka_ssl_certfile is None:
        return "LTV_KAFKA_SSL_KEYFILE needs LTV_KAFKA_SSL_CERTFILE (the certificate of that key)"
    return None


def _one_line(exc: ValidationError) -> str:
    """Render the first validation error as ``LTV_NAME=value: reason``.

    Secrets are never echoed: secret fields show ``<hidden>``, a Redis URL
    its masked form, and errors about several settings at once (no single
    variable) show no input at all -- that input is every setting.
    """
    err = exc.errors(include_url=False)[0]
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if not err["loc"]:
        return f"invalid settings: {err['msg']}{more}"
    loc = str(err["loc"][0])
    value = err.get("input")
    if loc in _SECRET_FIELDS:
        shown = "<hidden>"
    elif loc == "redis_url" and isinstance(value, str):
        shown = repr(mask_url(value))
    else:
        shown = repr(value)
    return f"invalid setting LTV_{loc.upper()}={shown}: {err['msg']}{more}"
