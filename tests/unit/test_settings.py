"""Settings are read from LTV_* variables and fail with one clear line."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest

from streams.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LTV_"):
            monkeypatch.delenv(name)


def test_defaults_match_design() -> None:
    s = load_settings()
    assert s.app_id == "ltv-stream"
    assert s.broker == "kafka://127.0.0.1:9092"
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.web_port == 6066
    assert s.partitions == 8
    assert s.input_topics == ("orders.purchases", "orders.cancellations", "customers.feedback")
    assert (s.topic_updates, s.topic_churn, s.topic_dead_letter) == (
        "ltv.updates",
        "ltv.churn-risk",
        "ltv.dead-letter",
    )
    assert s.base_currency == "USD"
    assert s.value_basis == "revenue"
    assert s.default_margin == Decimal("1.0")
    assert s.horizon_days == 365
    assert s.discount_rate == Decimal("0.10")
    assert s.risk_thresholds == (0.7, 0.3)
    assert s.cac == {}
    assert s.api_token is None
    assert s.clock == "wall"


def test_values_are_read_and_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LTV_PARTITIONS", "3")
    monkeypatch.setenv("LTV_BROKER", "10.0.0.1:9092")
    monkeypatch.setenv("LTV_RISK_THRESHOLDS", "0.8, 0.2")
    monkeypatch.setenv("LTV_CAC", '{"paid_search": 700, "social": "12.5"}')
    monkeypatch.setenv("LTV_VALUE_BASIS", "margin")
    s = load_settings()
    assert s.partitions == 3
    assert s.broker == "kafka://10.0.0.1:9092"
    assert s.risk_thresholds == (0.8, 0.2)
    assert s.cac == {"paid_search": Decimal(700), "social": Decimal("12.5")}
    assert s.value_basis == "margin"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("LTV_PARTITIONS", "abc", "valid integer"),
        ("LTV_PARTITIONS", "0", "greater than or equal to 1"),
        ("LTV_WEB_PORT", "70000", "less than or equal to 65535"),
        ("LTV_VALUE_BASIS", "profit", "'revenue' or 'margin'"),
        ("LTV_RISK_THRESHOLDS", "0.3,0.7", "medium < low"),
        ("LTV_RISK_THRESHOLDS", "0.5", "two numbers"),
        ("LTV_CAC", "{not json", "not JSON"),
        ("LTV_CAC", '{"x": -1}', "must be a number >= 0"),
        ("LTV_REDIS_URL", "http://x", "redis://"),
        ("LTV_BASE_CURRENCY", "usd", "pattern"),
        ("LTV_APP_ID", "a b", "only letters"),
        ("LTV_CLOCK", "sundial", "'wall' or 'event'"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"invalid setting {name}=")
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [("LTV_TOPIC_UPDATES", "orders.purchases"), ("LTV_TOPIC_FEEDBACK", "orders.cancellations")],
)
def test_topics_must_differ(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match="must all differ"):
        load_settings()


def test_api_token_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LTV_API_TOKEN", "s3cret-token")
    s = load_settings()
    assert s.api_token == "s3cret-token"
    assert "s3cret-token" not in repr(s)


def test_settings_are_immutable() -> None:
    s = Settings()
    with pytest.raises(ValueError):
        s.partitions = 2  # type: ignore[misc]


def test_cli_exits_with_one_line_naming_the_variable() -> None:
    env = {"LTV_PARTITIONS": "abc", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ltv: invalid setting LTV_PARTITIONS='abc'")
