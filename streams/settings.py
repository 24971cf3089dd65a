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

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"


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
    topic_updates: str = "ltv.updates"
    topic_churn: str = "ltv.churn-risk"
    topic_dead_letter: str = "ltv.dead-letter"

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
    # Orders plus cancellations one customer may remember (state.customer): at
    # ~20 encoded bytes each, the top of the range still fits a 1 MB record.
    max_customer_events: int = Field(20_000, ge=100, le=40_000)
    # Seconds between periodic model fits in the worker group (streams.fit).
    fit_interval: float = Field(3600.0, ge=1.0, le=30 * 86400.0)
    # Seconds between ticks of the inactivity timer (streams.inactivity).
    inactivity_interval: float = Field(60.0, gt=0.0, le=86400.0)

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
        if not value.startswith(("redis://", "rediss://", "redis+cluster://")):
            raise ValueError("must start with redis://, rediss:// or redis+cluster://")
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
            self.topic_updates,
            self.topic_churn,
            self.topic_dead_letter,
        ]
        if len(set(names)) != len(names):
            raise ValueError("LTV_TOPIC_* names must all differ")
        return self

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


def _one_line(exc: ValidationError) -> str:
    """Render the first validation error as ``LTV_NAME=value: reason``."""
    err = exc.errors(include_url=False)[0]
    loc = err["loc"][0] if err["loc"] else ""
    var = f"LTV_{str(loc).upper()}" if loc else "configuration"
    shown = "<hidden>" if loc == "api_token" else repr(err.get("input"))
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid setting {var}={shown}: {err['msg']}{more}"
