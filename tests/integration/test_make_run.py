"""``make run`` as a newcomer meets it: scripts/run for a bounded time, read as they would.

What a user sees in the terminal is the contract here: a banner with the
URLs (Prometheus among them), then ``ltv watch`` lines. Within 90 s of the
first update most repeat buyers must carry a prediction (predicted LTV,
P(alive), churn risk, segment); no warning or traceback the user did not
cause; Ctrl-C stops everything the script started and deletes the demo's
own deployment.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pipeline_harness import BOOTSTRAP, REDIS_URL, ROOT, free_port, require_servers

pytestmark = pytest.mark.integration

#: The predictions a repeat buyer's line must show once a model is in force.
PREDICTED = ("predicted_ltv=", "p_alive=", "churn_risk=", "segment=")
#: Most repeat buyers: the share of their lines that must carry every prediction.
MOST = 0.8
FIRST_UPDATE_WITHIN = 120.0
PREDICTIONS_WITHIN = 90.0
#: Seconds of watch output judged once PREDICTIONS_WITHIN has passed.
WINDOW = 15.0
NOISE = re.compile(r"Traceback|Error|WARNING|Warning|Failed", re.IGNORECASE)


class Terminal:
    """The script's combined output, each line with the time it was read."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.reader.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self.lock:
                self.lines.append((time.monotonic(), line.rstrip("\n")))

    def snapshot(self) -> list[tuple[float, str]]:
        with self.lock:
            return list(self.lines)

    def updates(self) -> list[tuple[float, str]]:
        return [(t, s) for t, s in self.snapshot() if re.match(r"c-\d+: version=\d+", s)]


def _repeat_buyer(line: str) -> bool:
    match = re.search(r" orders=(\d+)", line)
    return match is not None and int(match.group(1)) >= 2


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout:g} s")
        time.sleep(0.2)  # polling the reader thread's output


async def _topics_of(app_id: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        return [t for t in await admin.list_topics() if t.startswith(app_id)]
    finally:
        await admin.close()


def test_make_run_shows_predictions_within_90_s_and_cleans_up(tmp_path: Path) -> None:
    require_servers()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LTV_", "DEMO_"))}
    env.update(
        {
            "LTV_BROKER": f"kafka://{BOOTSTRAP}",
            "LTV_REDIS_URL": REDIS_URL,
            "LTV_WEB_PORT": str(free_port()),
            "LTV_DATA_DIR": str(tmp_path / "faust"),
        }
    )
    process = subprocess.Popen(
        [str(ROOT / "scripts" / "run")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    terminal = Terminal(process)
    try:
        _wait(lambda: terminal.updates(), FIRST_UPDATE_WITHIN, "a first ltv.updates line")
        first = terminal.updates()[0][0]
        _wait(
            lambda: time.monotonic() > first + PREDICTIONS_WITHIN + WINDOW,
            PREDICTIONS_WITHIN + WINDOW + 5,
            "the end of the judged window",
        )
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        terminal.reader.join(timeout=10)
    lines = terminal.snapshot()
    text = "\n".join(s for _, s in lines)
    assert process.returncode is not None
    banner = re.search(r"prometheus: (\S+)", text)
    assert banner is not None and banner.group(1).startswith("http://127.0.0.1:"), text[:2000]
    app_id = re.search(r"app id:\s+(\S+)", text)
    assert app_id is not None, text[:2000]

    judged = [
        s
        for t, s in terminal.updates()
        if first + PREDICTIONS_WITHIN <= t < first + PREDICTIONS_WITHIN + WINDOW
        and _repeat_buyer(s)
    ]
    assert len(judged) >= 20, f"only {len(judged)} repeat-buyer lines in the judged window"
    predicted = [s for s in judged if all(field in s for field in PREDICTED)]
    share = len(predicted) / len(judged)
    assert share >= MOST, f"{share:.0%} of {len(judged)} repeat-buyer lines carry a prediction"

    noise = [s for _, s in lines if NOISE.search(s)]
    assert not noise, "\n".join(noise[:20])
    assert re.search(rf"ltv drop: {re.escape(app_id.group(1))}: \d+ topics", text), text[-2000:]
    assert asyncio.run(_topics_of(app_id.group(1))) == []
    leftover = subprocess.run(
        ["pgrep", "-g", str(process.pid)], capture_output=True, text=True, check=False
    )
    assert leftover.stdout.strip() == "", f"processes left running: {leftover.stdout}"
