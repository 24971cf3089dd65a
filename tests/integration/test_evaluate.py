"""``ltv evaluate`` against states in a real Redis: CDNOW, 78 weeks, 39 held out.

The states are written straight into the customers table of a fresh app id
(no worker or Kafka needed: the command only reads the table), and the
command runs as a subprocess, as an operator runs it. The oracle of the
printed actual figure is the raw transaction rows: distinct (customer, day)
pairs after 1997-09-30.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cdnow import cdnow_states, load_rows, table_value
from pipeline_harness import REDIS_URL, ROOT

from state.store.config import StoreConfig
from state.store.keys import KeyLayout
from streams.evaluation_plots import DRAWINGS
from streams.fit import TABLE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PARTITIONS = 3
END = 545  # 1998-06-30 in days since 1997-01-01
SPLIT = 272  # 1997-09-30


@pytest.fixture
def app_id() -> Iterator[str]:
    """A fresh app id whose customers table holds the CDNOW states through 1998-06-30."""
    client: redis.Redis = StoreConfig.from_url(REDIS_URL).sync_client()
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RuntimeError(f"Redis not reachable at {REDIS_URL} ({exc})") from exc
    app = f"it-evaluate-{uuid.uuid4().hex[:8]}"
    layout = KeyLayout(app, TABLE)
    pipe = client.pipeline(transaction=False)
    for n, state in enumerate(cdnow_states(END)):
        pipe.hset(layout.data_key(n % PARTITIONS), state.customer_id, table_value(state))
    pipe.execute()
    try:
        yield app
    finally:
        for partition in range(PARTITIONS):
            client.delete(layout.data_key(partition))
        client.close()


def ltv(app_id: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LTV_")}
    env.update(
        {"LTV_APP_ID": app_id, "LTV_REDIS_URL": REDIS_URL, "LTV_PARTITIONS": str(PARTITIONS)}
    )
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


def test_evaluate_prints_the_holdout_scores_and_writes_the_figures(
    app_id: str, tmp_path: Path
) -> None:
    out = tmp_path / "figures"
    done = ltv(
        app_id, "evaluate", "--as-of", "1998-06-30", "--holdout-days", "273", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    print(done.stdout)  # the tables, for the record (pytest -s)
    assert "calibration through 1997-09-30, 273-day holdout: 2357 of 2357" in done.stdout
    ids, days, _ = load_rows()
    oracle = len({(i, d) for i, d in zip(ids.tolist(), days.tolist(), strict=True) if d > SPLIT})
    assert oracle == 1882
    for family in ("bgnbd", "mbgnbd", "paretonbd"):
        row = re.search(rf"^{family}\s+(\S+)\s+(\S+)\s+(\S+)\s", done.stdout, re.MULTILINE)
        assert row is not None, done.stdout
        assert float(row.group(3)) == oracle
    chosen = re.search(r"^chosen: (\w+) \(highest holdout log-likelihood\)$", done.stdout, re.M)
    assert chosen is not None, done.stdout
    for name in DRAWINGS:
        assert (out / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert f"wrote {out / name}" in done.stdout


def test_evaluate_says_why_it_cannot(app_id: str, tmp_path: Path) -> None:
    out = str(tmp_path)
    short = ltv(app_id, "evaluate", "--as-of", "1998-06-30", "--holdout-days", "400", "--out", out)
    assert short.returncode == 1
    assert "545-day history is too short for a 400-day holdout" in short.stderr
    assert "try --holdout-days 363 or less" in short.stderr
    # A clock before the stored orders: the states cannot be rewound to a split.
    early = ltv(app_id, "evaluate", "--as-of", "1997-09-30", "--holdout-days", "273", "--out", out)
    assert early.returncode == 1
    assert "no customer bought before the split at 1996-12-31" in early.stderr
    bad = ltv(app_id, "evaluate", "--as-of", "30/06/1998", "--out", out)
    assert bad.returncode == 2 and "ltv evaluate:" in bad.stderr
    none = ltv(app_id, "evaluate", "--holdout-days", "0", "--out", out)
    assert none.returncode == 2 and "--holdout-days" in none.stderr
    empty = ltv(f"{app_id}-none", "evaluate", "--holdout-days", "30", "--out", out)
    assert empty.returncode == 1 and "no customer" in empty.stderr
