"""docker-compose.yml, Procfile and pyproject agree with the app's settings.

There is no Docker engine on the build machines, so the compose file is
checked statically: the services exist, the ports line up and every LTV_*
variable it sets is a real, valid setting.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _host_ports(service: dict[str, Any]) -> dict[int, int]:
    """Container port -> host port, from "127.0.0.1:HOST:CONTAINER" entries."""
    mapping = {}
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        mapping[int(parts[-1])] = int(parts[-2])
    return mapping


def _worker_settings(compose: dict[str, Any]) -> Settings:
    env = compose["services"]["worker"]["environment"]
    fields = {name.removeprefix("LTV_").lower(): value for name, value in env.items()}
    unknown = set(fields) - set(Settings.model_fields)
    assert not unknown, f"compose sets variables the app does not know: {unknown}"
    return Settings.model_validate(fields)


def test_stack_has_every_service(compose: dict[str, Any]) -> None:
    assert {"kafka", "redis", "worker", "prometheus", "grafana"} <= set(compose["services"])


def test_ports_bind_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for entry in service.get("ports", []):
            assert str(entry).startswith("127.0.0.1:"), f"{name} publishes {entry} beyond loopback"


def test_kafka_is_kraft_with_single_node_transaction_settings(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    default_port = urlparse(Settings().broker).port
    assert _host_ports(kafka)[9092] == default_port


def test_redis_uses_append_only_file(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert _host_ports(redis)[6379] == urlparse(Settings().redis_url).port


def test_worker_environment_is_valid_and_consistent(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    settings = _worker_settings(compose)
    assert _host_ports(worker)[settings.web_port] == settings.web_port
    broker = urlparse(settings.broker)
    kafka_env = compose["services"]["kafka"]["environment"]
    assert f"{broker.hostname}:{broker.port}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    redis = urlparse(settings.redis_url)
    assert redis.hostname in compose["services"]
    assert worker["command"][:2] == ["ltv", "worker"]


def test_prometheus_scrapes_the_worker(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    mounted = prometheus["volumes"][0].split(":")[0]
    config = yaml.safe_load((ROOT / mounted).read_text())
    targets = [
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    assert f"worker:{_worker_settings(compose).web_port}" in targets


def test_grafana_mounts_provisioning(compose: dict[str, Any]) -> None:
    volumes = compose["services"]["grafana"]["volumes"]
    for volume in volumes:
        source = volume.split(":")[0]
        assert (ROOT / source).is_dir(), f"grafana mounts missing {source}"


def test_procfile_runs_the_console_script() -> None:
    procfile = (ROOT / "Procfile").read_text().splitlines()
    worker = next(line for line in procfile if line.startswith("worker:"))
    assert worker.split(":", 1)[1].split()[:2] == ["ltv", "worker"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["ltv"] == "streams.cli:main"
