"""Real worker processes against the real Kafka and Redis, for integration tests.

Each deployment gets its own app id, topic names, web port and data dir, so
tests never see each other's records, and everything is removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from schema_check import assert_valid

from state.store.config import StoreConfig
from streams.schemas import EventKind

BOOTSTRAP = os.environ.get("LTV_TEST_BOOTSTRAP", "127.0.0.1:9092")
REDIS_URL = os.environ.get("LTV_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[2]


def require_servers() -> None:
    """Fail (never skip) with a clear message when Kafka or Redis is not up."""
    host, port = BOOTSTRAP.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as exc:
        raise RuntimeError(
            f"Kafka not reachable at {BOOTSTRAP} ({exc}); run scripts/infra up"
        ) from exc
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        raise RuntimeError(
            f"Redis not reachable at {REDIS_URL} ({exc}); run scripts/infra up"
        ) from exc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


#: The schema of each output topic of a Deployment, by its ``Deployment.topic`` name.
_OUTPUT_KINDS: dict[str, EventKind] = {
    "updates": "update",
    "churn": "churn",
    "dead-letter": "dead_letter",
    "customers": "update",
}


def output_kind(topic: str) -> EventKind | None:
    """Which output a Deployment's ``topic`` carries (None: not an output topic)."""
    return _OUTPUT_KINDS.get(topic.rpartition(".")[2])


@dataclass
class Deployment:
    """One isolated installation: names, environment and the workers started for it."""

    tmp: Path
    partitions: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)
    #: The servers of this deployment (default: the shared ones of scripts/test).
    bootstrap: str = BOOTSTRAP
    redis_url: str = REDIS_URL
    app_id: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    workers: list[WorkerProcess] = field(default_factory=list)

    def topic(self, name: str) -> str:
        return f"{self.app_id}.{name}"

    @property
    def purchases(self) -> str:
        return self.topic("purchases")

    @property
    def cancellations(self) -> str:
        return self.topic("cancellations")

    @property
    def feedback(self) -> str:
        return self.topic("feedback")

    @property
    def updates(self) -> str:
        return self.topic("updates")

    @property
    def churn(self) -> str:
        return self.topic("churn")

    @property
    def dead_letter(self) -> str:
        return self.topic("dead-letter")

    @property
    def latest(self) -> str:
        return self.topic("customers")

    def env(self, web_port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LTV_")}
        env.update(
            {
                "LTV_APP_ID": self.app_id,
                "LTV_BROKER": f"kafka://{self.bootstrap}",
                "LTV_REDIS_URL": self.redis_url,
                "LTV_WEB_PORT": str(web_port),
                "LTV_PARTITIONS": str(self.partitions),
                "LTV_TOPIC_PURCHASES": self.purchases,
                "LTV_TOPIC_CANCELLATIONS": self.cancellations,
                "LTV_TOPIC_FEEDBACK": self.feedback,
                "LTV_TOPIC_UPDATES": self.updates,
                "LTV_TOPIC_CHURN": self.churn,
                "LTV_TOPIC_DEAD_LETTER": self.dead_letter,
                "LTV_TOPIC_CUSTOMERS": self.latest,
                "LTV_DATA_DIR": str(self.tmp / "faust"),
            }
        )
        env.update(self.extra_env)
        return env

    def start_worker(self, timeout: float = 90.0) -> WorkerProcess:
        worker = WorkerProcess(self, free_port(), self.tmp / f"worker-{len(self.workers)}.log")
        self.workers.append(worker)
        worker.start()
        worker.wait_ready(timeout)
        return worker

    def ltv(self, worker: WorkerProcess, *args: str) -> subprocess.CompletedProcess[str]:
        """Run an ``ltv`` command against this deployment (next to ``worker``)."""
        return subprocess.run(
            [sys.executable, "-m", "streams.cli", *args],
            env=self.env(worker.web_port),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def run_ltv(self, worker: WorkerProcess, *args: str) -> None:
        """Run an ``ltv`` command against this deployment and require success."""
        result = self.ltv(worker, *args)
        assert result.returncode == 0, f"ltv {args[0]} failed:\n{result.stdout}\n{result.stderr}"

    def all_topics(self) -> list[str]:
        return [
            self.purchases,
            self.cancellations,
            self.feedback,
            self.updates,
            self.churn,
            self.dead_letter,
            f"{self.app_id}-customers-changelog",
            f"{self.app_id}-inactivity",
            f"{self.app_id}-__assignor-__leader",
        ]

    async def cleanup(self) -> None:
        for worker in self.workers:
            worker.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            doomed = [t for t in self.all_topics() if t in existing]
            if doomed:
                await admin.delete_topics(doomed)
        finally:
            await admin.close()
        client: Any = StoreConfig.from_url(self.redis_url).sync_client()
        try:
            for key in list(client.scan_iter(match=f"*{self.app_id}*", count=1000)):
                client.delete(key)  # one by one: on a Cluster the keys span slots
        finally:
            client.close()


@dataclass
class WorkerProcess:
    """An ``ltv worker`` subprocess with its own web port and log file."""

    deployment: Deployment
    web_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "info"],
            env=self.deployment.env(self.web_port),
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url(path), headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                return self.get("/readyz")[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout, lambda: f"worker not ready within {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """kill -9: no shutdown hooks, no final flush."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def wait_until(predicate: Callable[[], bool], timeout: float, message: Any) -> None:
    """Poll ``predicate`` every 0.1 s until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(0.1)


async def produce(
    records: Iterable[tuple[str, bytes | None, bytes]],
    bootstrap: str = BOOTSTRAP,
    max_request_size: int = 1_048_576,
) -> int:
    """Send (topic, key, value) records in order and wait for every acknowledgement."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_request_size=max_request_size,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in records]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


def event(topic: str, body: dict[str, Any], key: str | None = None) -> tuple[str, bytes, bytes]:
    """A JSON input record keyed by its customer id (or ``key``)."""
    return topic, (key or body["customer_id"]).encode(), orjson.dumps(body)


async def consume(
    topic: str, expected: int, timeout: float = 60.0, settle: float = 0.0
) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning until ``expected`` records arrived.

    ``settle`` keeps reading that many seconds more, to catch extra records
    that should not be there.
    """
    raw = await consume_raw(topic, expected, timeout=timeout, settle=settle)
    return [orjson.loads(value) for value in raw]


async def consume_raw(
    topic: str,
    expected: int | Callable[[list[bytes]], bool],
    *,
    timeout: float = 60.0,
    settle: float = 0.0,
    bootstrap: str = BOOTSTRAP,
) -> list[bytes]:
    """Record values of ``topic`` from the beginning, in offset order per partition.

    Reads until ``expected`` records arrived (or ``expected(values)`` holds),
    at most ``timeout`` seconds, then ``settle`` seconds more. Every record of
    an output topic is checked against its schema in docs/schemas.
    """

    def done(values: list[bytes]) -> bool:
        return expected(values) if callable(expected) else len(values) >= expected

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_bytes=16 * 1_048_576,
        max_partition_fetch_bytes=4 * 1_048_576,
    )
    await consumer.start()
    out: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while not done(out) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            out.extend(r.value for rs in batches.values() for r in rs if r.value is not None)
        end = time.monotonic() + settle
        while time.monotonic() < end:
            batches = await consumer.getmany(timeout_ms=200)
            out.extend(r.value for rs in batches.values() for r in rs if r.value is not None)
    finally:
        await consumer.stop()
    kind = output_kind(topic)
    if kind is not None:
        for value in out:
            assert_valid(kind, value)
    return out


async def key_history(
    topics: Iterable[str], keys: Iterable[bytes], *, bootstrap: str = BOOTSTRAP
) -> list[tuple[str, int, int, bytes, bytes | None]]:
    """Every record of ``keys`` in ``topics`` up to their current ends.

    (topic, partition, offset, key, value) in topic/partition/offset order:
    what a failing reliability case prints about the customers it lost.
    """
    wanted = set(keys)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    tps = [
        TopicPartition(topic["topic"], p["partition"])
        for topic in described
        for p in topic["partitions"]
    ]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    out: list[tuple[str, int, int, bytes, bytes | None]] = []
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + 60.0
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {sorted(set(topics))} took over 60 s")
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                out.extend(
                    (tp.topic, tp.partition, r.offset, r.key, r.value)
                    for r in records
                    if r.key in wanted
                )
    finally:
        await consumer.stop()
    return sorted(out, key=lambda r: (r[0], r[1], r[2]))


@asynccontextmanager
async def deployed(tmp: Path, **options: Any) -> AsyncIterator[Deployment]:
    """A Deployment whose workers, topics and Redis keys are removed on exit."""
    require_servers()
    deployment = Deployment(tmp, **options)
    try:
        yield deployment
    finally:
        await deployment.cleanup()
