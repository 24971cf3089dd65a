"""Rules, alerts and dashboard against a real Prometheus scraping a real worker.

A worker with its own app id, topics and web port is fed 2000 demo events
(two years of a demo shop with channel costs, so the business panels have data);
a Prometheus started here on a free loopback port scrapes it with deploy/'s
rule files. Then every rule must load and evaluate healthily, every alert
expression must evaluate, and every dashboard query must return a series,
so a renamed metric or a typo in a panel fails here instead of on a screen.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pipeline_harness import (
    ROOT,
    Deployment,
    WorkerProcess,
    deployed,
    free_port,
    wait_until,
)

from streams.demo import cac_setting

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "ltv-stream.json"
DEMO_EVENTS = 2000
#: Further back than the longest calibration window (ltv.calibration.WINDOWS).
CALIBRATION_DAYS_BACK = 100
SCRAPE_INTERVAL = "1s"
#: What Grafana's interval macros expand to in the queries sent here: wide
#: enough for rate() to find two samples at the 1 s scrape interval.
MACROS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


@dataclass
class Prometheus:
    """A prometheus server subprocess with a temporary config and TSDB."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def get(self, path: str, **params: str) -> dict[str, Any]:
        """GET an API path; returns the decoded body (errors included)."""
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        return body

    def query(self, expr: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr)

    def series(self, expr: str) -> int:
        """Number of series an instant query returns; fails on a query error."""
        body = self.query(expr)
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        result = body["data"]["result"]
        return len(result) if isinstance(result, list) else 1

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2):
                return True
        except OSError:
            return False

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found: install Debian's prometheus package "
            "(sudo apt-get install -y prometheus), or run `make test`, which installs it"
        )
    return path


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    # Channel costs for the LTV:CAC panel; the insights gauges refreshed every second.
    env = {"LTV_CAC": cac_setting(), "LTV_INSIGHTS_INTERVAL": "1"}
    async with deployed(tmp_path, extra_env=env) as dep:
        yield dep


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    """Start Prometheus scraping one worker, with deploy/'s rule files; stop it afterwards."""
    started: list[Prometheus] = []

    def start(worker: WorkerProcess) -> Prometheus:
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "rule_files": [str(DEPLOY / "rules.yml"), str(DEPLOY / "alerts.yml")],
            "scrape_configs": [
                {
                    "job_name": "ltv-worker",
                    "static_configs": [{"targets": [f"127.0.0.1:{worker.web_port}"]}],
                }
            ],
        }
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        port = free_port()
        log_path = tmp_path / "prometheus.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [
                    _binary("prometheus"),
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Prometheus(proc, port, log_path)
        started.append(server)
        wait_until(server.ready, 30, lambda: f"prometheus not ready in 30s:\n{server.tail()}")
        return server

    yield start
    for server in started:
        server.proc.terminate()
        try:
            server.proc.wait(30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(10)


def _rule_files() -> list[dict[str, Any]]:
    return [
        rule
        for name in ("rules.yml", "alerts.yml")
        for group in yaml.safe_load((DEPLOY / name).read_text())["groups"]
        for rule in group["rules"]
    ]


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, query) of every dashboard target, macros and variables expanded.

    A template variable becomes its "All" value (``allValue``), which is what
    a viewer sees by default.
    """
    dashboard = json.loads(DASHBOARD.read_text())
    values = dict(MACROS)
    for variable in dashboard["templating"]["list"]:
        values[f"${variable['name']}"] = variable["allValue"]
    # Longest names first, so $__rate_interval is not cut short by a shorter name.
    pattern = re.compile(
        "|".join(re.escape(name) for name in sorted(values, key=len, reverse=True))
    )
    return [
        (panel["title"], pattern.sub(lambda m: values[m.group(0)], target["expr"]))
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


async def test_rules_alerts_and_every_panel_work_on_live_metrics(
    deployment: Deployment, prometheus_for: Any
) -> None:
    worker = deployment.start_worker()
    prometheus: Prometheus = prometheus_for(worker)
    # A shop two years old: the NRR panel needs revenue in both of its windows.
    start = (datetime.now(UTC) - timedelta(days=760)).date().isoformat() + "T00:00:00+00:00"
    deployment.run_ltv(
        worker,
        *("demo", "--rate", "0", "--count", str(DEMO_EVENTS)),
        *("--customers", "500", "--start", start),
    )
    started = time.monotonic()

    def scraped_all_events() -> bool:
        body = prometheus.query('sum(ltv_events_consumed_total{job="ltv-worker"})')
        result = body.get("data", {}).get("result", [])
        return bool(result) and float(result[0]["value"][1]) >= DEMO_EVENTS

    wait_until(scraped_all_events, 120, lambda: f"Prometheus never saw {DEMO_EVENTS} events")
    # A fitted model feeds the model version and age panels. The calibration
    # panel needs a closed window: a fit 100 days back predicts the 30 and
    # 90 days after it (replacing any window the worker's own fit opened
    # now, which starts after that clock), and the fit now judges both.
    past = (datetime.now(UTC) - timedelta(days=CALIBRATION_DAYS_BACK)).date().isoformat()
    deployment.run_ltv(worker, "fit", "--as-of", past)
    deployment.run_ltv(worker, "fit")

    expected_rules = _rule_files()

    def rules_evaluated() -> list[dict[str, Any]] | None:
        groups = prometheus.get("/api/v1/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        evaluated = all(not rule["lastEvaluation"].startswith("0001") for rule in rules)
        return rules if evaluated and len(rules) == len(expected_rules) else None

    wait_until(lambda: rules_evaluated() is not None, 60, "rules loaded and evaluated")
    rules = rules_evaluated() or []
    unhealthy = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not unhealthy, f"rules failing: {unhealthy}"

    for rule in expected_rules:
        if "alert" in rule:
            body = prometheus.query(rule["expr"])
            assert body["status"] == "success", f"{rule['alert']}: {body.get('error')}"

    queries = panel_queries()

    def counts() -> list[tuple[str, str, int]]:
        return [(title, expr, prometheus.series(expr)) for title, expr in queries]

    # Recording rules over 1m windows need a few evaluations after the
    # scrape that saw the events; poll until every panel has data or time out.
    wait_until(lambda: all(n for _, _, n in counts()), 60, lambda: _table(counts()))
    print(f"\n{_table(counts())}\n(after {time.monotonic() - started:.0f}s of scraping)")


def _table(rows: list[tuple[str, str, int]]) -> str:
    width = max(len(title) for title, _, _ in rows)
    lines = [f"{'panel':<{width}}  series  query", f"{'-' * width}  ------  -----"]
    lines += [f"{title:<{width}}  {n:>6}  {expr}" for title, expr, n in rows]
    return "\n".join(lines)
