"""`ltv bench throughput` still runs end to end and writes its JSON keys (benchmarks are
not tests; this only keeps the bench code from rotting)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_harness import BOOTSTRAP, REDIS_URL, require_servers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(280)]

ROOT = Path(__file__).resolve().parents[2]


def test_bench_throughput_writes_every_key(tmp_path: Path) -> None:
    require_servers()
    out = tmp_path / "throughput.json"
    command = [sys.executable, "-m", "streams.cli", "bench", "throughput", "--events", "10000"]
    command += ["--bootstrap", BOOTSTRAP, "--redis-url", REDIS_URL, "--json", str(out)]
    # Quix Streams is a bench extra (pip install -e '.[bench]'), not a test dependency.
    command += ["--no-quix"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=260)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    for key in ("worker_events_per_s", "baseline_events_per_s", "ratio"):
        assert figures[key] > 0, figures
    assert figures["two_workers_events_per_s"] > 0, figures
    assert figures["events"] == 10000
    assert "## throughput" in done.stdout
