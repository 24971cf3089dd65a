"""What every worker benchmark shares: infra options, the synthetic feed, workers as processes.

A benchmark runs real ``ltv worker`` processes against the shared broker and
Redis (a secured broker too: the LTV_KAFKA_* security variables of the
bench's environment reach the workers and every client of the bench, see
``Infra.kafka``), each on fresh topics and a fresh app id (so nothing of a previous run
is read), and removes its topics and Redis keys afterwards. Figures are read
from the worker's own /metrics, so the bench measures the service as
deployed, not an in-process imitation of it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient

from ltv.formulas import ValueBasis
from state import envelope
from state.codec import encode_state
from state.customer import CustomerState, StateConfig, apply_event, new_state
from state.events import decode_event
from state.model_store import ModelRecord, save_model
from state.store.config import StoreConfig
from streams.demo import DemoEvent, DemoFeed
from streams.fit import Population, fit_population
from streams.kafka_security import SECURITY_VARIABLES, kafka_client
from streams.publisher import publish
from streams.settings import Settings
from streams.wiring import build_processor

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = Path("/tmp/ltv-bench")
_PROCESSED = re.compile(rb"^ltv_events_processed_total\{[^}]*\} ([0-9.e+]+)$", re.M)
_ASSIGNED = re.compile(rb"^ltv_assigned_partitions ([0-9.e+]+)$", re.M)

#: The benchmarks' mix: ~85 % purchases, ~10 % cancellations, ~5 % re-sent duplicates.
REFUND_RATE = 0.1
DUPLICATE_RATE = 0.0525
FEED_START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Infra:
    """The shared servers a benchmark talks to."""

    bootstrap: str
    redis_url: str
    #: The LTV_KAFKA_* security variables (SASL, TLS) of the bench's environment.
    kafka_env: Mapping[str, str] = field(default_factory=dict)

    def kafka(self) -> dict[str, Any]:
        """Connection arguments of the bench's own aiokafka clients: servers and security."""
        return kafka_client(settings_for({"LTV_BROKER": self.bootstrap, **self.kafka_env}))


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Options every benchmark takes: where the servers are, where the JSON goes."""
    parser.add_argument(
        "--bootstrap", default=os.environ.get("LTV_TEST_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("LTV_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measured phase")


def infra(args: argparse.Namespace) -> Infra:
    kafka_env = {k: v for k, v in os.environ.items() if k in SECURITY_VARIABLES}
    return Infra(args.bootstrap, args.redis_url, kafka_env)


def run_id() -> str:
    """A fresh name: topics, consumer groups and Redis keys of one run."""
    return f"bench{uuid.uuid4().hex[:8]}"


def size_suffix(n: int) -> str:
    """``1m`` / ``100k``: how the JSON keys name a population size."""
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def settings_env(topics: str, app_id: str, servers: Infra) -> dict[str, str]:
    """LTV_* variables of a worker of ``app_id`` reading the input topics of run ``topics``."""
    return {
        "LTV_APP_ID": app_id,
        "LTV_BROKER": f"kafka://{servers.bootstrap}",
        "LTV_REDIS_URL": servers.redis_url,
        "LTV_TOPIC_PURCHASES": f"{topics}.purchases",
        "LTV_TOPIC_CANCELLATIONS": f"{topics}.cancellations",
        "LTV_TOPIC_FEEDBACK": f"{topics}.feedback",
        "LTV_TOPIC_UPDATES": f"{app_id}.updates",
        "LTV_TOPIC_CHURN": f"{app_id}.churn",
        "LTV_TOPIC_DEAD_LETTER": f"{app_id}.dead-letter",
        "LTV_TOPIC_CUSTOMERS": f"{app_id}.customers",
        "LTV_DATA_DIR": str(LOG_DIR / "data"),
        # LTV_INSIGHTS=false in the bench's environment measures without the aggregates.
        "LTV_INSIGHTS": os.environ.get("LTV_INSIGHTS", "true"),
        **servers.kafka_env,
    }


def settings_for(env: Mapping[str, str]) -> Settings:
    """The Settings a worker started with ``env`` sees (LTV_* only)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("LTV_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        return Settings()
    finally:
        for key in env:
            del os.environ[key]
        os.environ.update(saved)


def feed(customers: int, seed: int = 8) -> DemoFeed:
    """The benchmark's synthetic shop with the benchmarks' event mix.

    Purchases and cancellations only: the baselines (the raw aiokafka loop,
    Quix Streams) consume those two inputs, and the figures stay comparable
    with the runs before NPS answers existed.
    """
    return DemoFeed(
        customers,
        seed=seed,
        start=FEED_START,
        span_days=365,
        refund_rate=REFUND_RATE,
        duplicate_rate=DUPLICATE_RATE,
        feedback=False,
    )


def preload(settings: Settings, events: int, customers: int) -> int:
    """Publish ``events`` of the bench feed (acknowledged); return how many."""
    return asyncio.run(publish(feed(customers), settings, limit=events))


def fitted_model(settings: Settings, events: int, customers: int) -> ModelRecord:
    """The model the periodic fit would store after the first ``events`` of the
    bench feed: every contender of a run values with it from its first event.

    Contenders compared on per-event work must do the same work per event; a
    worker left to fit on its own would value part of the run without a model
    and refit as its table doubled, and the fit's cost is ``bench/fit_job.py``'s
    to measure, not the drain's.
    """
    cfg = build_processor(settings).state_cfg
    states = applied(itertools.islice(feed(customers), events), cfg)
    now = datetime.now(UTC)
    population = Population(
        as_of=now, basis=ValueBasis(settings.value_basis), holdout_days=settings.fit_holdout_days
    )
    population.add_all(envelope.encode(encode_state(s)) for s in states.values())
    return fit_population(population, now)


def applied(events: Iterable[DemoEvent], cfg: StateConfig) -> dict[str, CustomerState]:
    """Each customer's state after ``events``, applied with the worker's own transitions."""
    states: dict[str, CustomerState] = {}
    for event in events:
        state = states.get(event.key) or new_state(event.key)
        decoded = decode_event(event.kind, orjson.dumps(event.value), fx=cfg.fx)
        states[event.key] = apply_event(state, decoded, cfg).state
    return states


def install_model(record: ModelRecord, app_ids: Iterable[str], servers: Infra) -> None:
    """Store ``record`` as the model in force of every app in ``app_ids``."""

    async def store() -> None:
        client = StoreConfig.from_url(servers.redis_url).async_client()
        try:
            for app_id in app_ids:
                await save_model(client, app_id, record)
        finally:
            await client.aclose()

    asyncio.run(store())


@dataclass
class Worker:
    """One ``ltv worker`` process with its own web port."""

    name: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> float:
        """Spawn the worker; return the monotonic time just before the spawn."""
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LTV_")}
        env.update(self.env, LTV_WEB_PORT=str(self.port), **self.extra_env)
        self._log = open(LOG_DIR / f"{self.name}.log", "ab")  # noqa: SIM115 - closed in stop()
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "warn"],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return started

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def metrics(self) -> bytes | None:
        """The /metrics page, or None while the worker does not answer."""
        try:
            url = f"http://127.0.0.1:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                body: bytes = response.read()
                return body
        except (OSError, urllib.error.URLError):
            return None

    def processed(self) -> float:
        """Input records handled so far (every outcome), 0 before the worker answers."""
        body = self.metrics()
        return 0.0 if body is None else sum(float(v) for v in _PROCESSED.findall(body))

    def assigned(self) -> float:
        """Input partitions the worker consumes now, 0 before it answers."""
        body = self.metrics()
        return 0.0 if body is None else sum(float(v) for v in _ASSIGNED.findall(body))

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.port}/readyz"
            with urllib.request.urlopen(url, timeout=5) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def peak_rss(self) -> int:
        """Peak resident set size of the worker process (VmHWM), bytes."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        assert match, status
        return int(match.group(1)) * 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time the worker process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """SIGKILL: no flush, no leave-group, no goodbye."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        if self._log is not None:
            self._log.close()


class Profiler:
    """py-spy sampling a worker (idle frames included) into a collapsed-stack file.

    ``summary`` turns the samples into the table the README quotes: the share
    of samples in which a function is on the stack (inclusive) and at the
    top (self), so "where the time goes" is read off one run.
    """

    def __init__(self, pid: int, path: Path) -> None:
        self.path = path
        py_spy = Path(sys.executable).with_name("py-spy")
        self._process = subprocess.Popen(
            [
                *(str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--idle"),
                *("--rate", "200", "--nonblocking", "--output", str(path)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self._process.send_signal(signal.SIGINT)
        self._process.wait(60)

    def summary(self, top: int = 25) -> list[tuple[str, float, float]]:
        """(function, inclusive %, self %) of the ``top`` functions by inclusive share."""
        inclusive: Counter[str] = Counter()
        own: Counter[str] = Counter()
        total = 0
        for line in self.path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frames = [_frame_name(f) for f in stack.split(";")]
            for name in set(frames):
                inclusive[name] += n
            own[frames[-1]] += n
        if not total:
            return []
        return [
            (name, 100.0 * n / total, 100.0 * own[name] / total)
            for name, n in inclusive.most_common(top)
        ]


def _frame_name(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``module.func``: stable across line edits."""
    func, _, where = frame.partition(" (")
    module = Path(where.split(":", 1)[0]).stem
    return f"{module}.{func}"


def print_profile(rows: list[tuple[str, float, float]]) -> None:
    print(f"{'function (py-spy, idle included)':<60} {'incl %':>7} {'self %':>7}")
    for name, incl, self_pct in rows:
        print(f"{name[:60]:<60} {incl:>7.1f} {self_pct:>7.1f}")


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05
) -> float:
    """Poll ``condition``; return the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(poll)
    raise SystemExit(f"bench: timed out after {timeout:.0f}s waiting for {what}")


@dataclass(frozen=True)
class Drain:
    """How ``workers`` drained a preloaded backlog."""

    events_per_s: float
    seconds: float
    #: CPU seconds the workers used per wall second of the drain (1.0 = one core).
    cpu_share: float
    #: Cores busy on the whole machine meanwhile (/proc/stat): the workers,
    #: and what they share the cores with (broker, Redis, this process).
    machine_cores: float


def drain_rate(workers: list[Worker], total: int, timeout: float) -> Drain:
    """Time ``workers`` draining ``total`` preloaded events.

    Timed from the first sample that finds input partitions assigned
    (start-up and table recovery excluded) to the last event. Until then
    /metrics is sampled every 0.02 s (the workers are idle). Afterwards a
    scrape costs the workers CPU, so sampling often slows what is measured:
    the next sample is due when about a quarter of the remaining work should
    be done at the rate so far (at most 1 s, at least 0.05 s apart), so the
    scrapes are few during the drain and close together at its end, where
    the last one decides the time.
    """
    first: tuple[float, float, float] | None = None
    deadline = time.monotonic() + timeout
    done = 0.0
    while time.monotonic() < deadline:
        if first is None and sum(w.assigned() for w in workers) > 0:
            done = sum(w.processed() for w in workers)
            first = (time.monotonic(), done, sum(w.cpu_seconds() for w in workers))
            busy_before = machine_busy_seconds()
        done = sum(w.processed() for w in workers)
        if done >= total:
            break
        time.sleep(_next_sample(first, done, total))
    if first is None or done < total:
        raise SystemExit(f"bench: workers processed {done:.0f} of {total} within {timeout:.0f}s")
    if first[1] >= total:
        raise SystemExit(f"bench: {total} events drained before the first sample; use more")
    elapsed = max(time.monotonic() - first[0], 1e-9)
    cpu = sum(w.cpu_seconds() for w in workers) - first[2]
    busy = machine_busy_seconds() - busy_before
    return Drain((total - first[1]) / elapsed, elapsed, cpu / elapsed, busy / elapsed)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (not idle or waiting on I/O), all cores."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def _next_sample(first: tuple[float, float, float] | None, done: float, total: int) -> float:
    """Seconds until ``drain_rate`` samples again (see there)."""
    if first is None:
        return 0.02
    elapsed = time.monotonic() - first[0]
    rate = (done - first[1]) / elapsed if elapsed > 0 else 0.0
    if rate <= 0:
        return 0.25
    return min(1.0, max(0.05, (total - done) / rate / 4))


async def _delete_topics(prefixes: tuple[str, ...], servers: Infra) -> None:
    admin = AIOKafkaAdminClient(**servers.kafka())
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefixes)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


def cleanup(prefixes: tuple[str, ...], servers: Infra) -> None:
    """Delete the run's topics and every Redis key naming one of ``prefixes``."""
    asyncio.run(_delete_topics(prefixes, servers))
    client = StoreConfig.from_url(servers.redis_url).sync_client()
    for prefix in prefixes:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"*{prefix}*", count=10_000):
            batch.append(key)
            if len(batch) >= 10_000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)


@contextmanager
def running(*workers: Worker) -> Iterator[None]:
    """Stop ``workers`` whatever happens inside the block."""
    try:
        yield
    finally:
        for worker in workers:
            worker.stop()


def report(title: str, figures: Mapping[str, Any], path: Path | None) -> None:
    """Print ``figures`` as a two-column table and write them as JSON to ``path``."""
    width = max(len(k) for k in figures)
    print(f"## {title}")
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(figures), indent=2) + "\n")
