"""Prometheus configuration, recording rules and alerts, checked by promtool.

promtool is a local binary (Debian package ``prometheus``, installed by
scripts/test), so these tests need no running server. alerts_test.yml proves
every alert fires on a synthetic series and stays silent on look-alikes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TIMEOUT = 60


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install Debian's prometheus package "
            "(sudo apt-get install -y prometheus), or run `make test`, which installs it"
        )
    return path


def _run(promtool: str, *args: str) -> str:
    result = subprocess.run(
        [promtool, *args],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


@pytest.mark.parametrize("config", ["prometheus.yml", "compose-prometheus.yml"])
def test_config_is_valid_and_loads_both_rule_files(promtool: str, config: str) -> None:
    output = _run(promtool, "check", "config", config)
    assert "2 rule files found" in output


def test_rule_files_are_valid(promtool: str) -> None:
    output = _run(promtool, "check", "rules", "rules.yml", "alerts.yml")
    assert output.count("SUCCESS") == 2


def test_every_alert_is_unit_tested(promtool: str) -> None:
    _run(promtool, "test", "rules", "alerts_test.yml")
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    tests = yaml.safe_load((DEPLOY / "alerts_test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    silent = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if not case["exp_alerts"]
    }
    assert alerts == fired, "every alert needs a case where it fires"
    assert alerts == silent, "every alert needs a case where it stays silent"


def test_compose_mounts_every_rule_file_next_to_the_config() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(
        (PurePosixPath(volume.split(":")[1]), ROOT / volume.split(":")[0])
        for volume in compose["services"]["prometheus"]["volumes"]
    )
    config_path = PurePosixPath("/etc/prometheus/prometheus.yml")
    config = yaml.safe_load(mounts[config_path].read_text())
    for rule_file in config["rule_files"]:
        target = config_path.parent / rule_file
        assert target in mounts, f"compose does not mount {rule_file} at {target}"
        assert mounts[target].resolve() == (DEPLOY / rule_file).resolve()
