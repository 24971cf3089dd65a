"""Fixtures of the store's integration tests: real Kafka, real Redis, worker subprocesses.

The servers come from ``scripts/infra up`` (LTV_TEST_BOOTSTRAP and
LTV_TEST_REDIS_URL, exported by scripts/test). When they are not reachable
the tests FAIL with a message saying so: a skipped integration test would be
counted as passing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import redis.cluster
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from yarl import URL

from state.store.config import StoreConfig
from state.store.keys import KeyLayout

HERE = Path(__file__).resolve().parent
FAUST = Path(sys.executable).with_name("faust")
BROKER = "kafka://" + os.environ.get("LTV_TEST_BOOTSTRAP", "127.0.0.1:9092")
REDIS_URL = os.environ.get("LTV_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TABLE = "counters"

#: Expected value per key: the set of distinct event ids applied.
Oracle = dict[bytes, set[str]]


def bootstrap() -> str:
    """Return host:port of the first broker in LTV_BROKER."""
    first = BROKER.split(",")[0]
    return first.split("://", 1)[-1]


def require_servers(redis_url: str = REDIS_URL) -> None:
    """Fail the test with a clear message when Kafka or Redis is not up."""
    host, _, port = bootstrap().rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"Kafka not reachable at {bootstrap()} ({exc}): run `scripts/infra up`")
    try:
        StoreConfig.from_url(redis_url).sync_client().ping()
    except redis.exceptions.RedisError as exc:
        pytest.fail(f"Redis not reachable at {redis_url} ({exc}): run `scripts/infra up`")


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float, what: str
) -> None:
    """Poll ``condition`` every 0.1 s; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


@dataclass
class Worker:
    """One ``faust worker`` subprocess running ``store_worker``."""

    process: subprocess.Popen[bytes]
    log: Path
    stats: Path

    def recovered(self) -> int:
        """Changelog records this worker's recovery applied."""
        if not self.stats.exists():
            return 0
        return int(json.loads(self.stats.read_text())["recovered"])

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM: the store flushes), KILL after ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """kill -9: no flush, no goodbye to the group."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@dataclass
class StoreWorld:
    """A unique app id, input topic and key space, and the workers using them."""

    tmp: Path
    redis_url: str
    partitions: int = 4
    app_id: str = field(default_factory=lambda: f"store-test-{uuid.uuid4().hex[:10]}")
    workers: list[Worker] = field(default_factory=list)
    oracle: Oracle = field(default_factory=dict)
    _seq: int = 0

    @property
    def topic(self) -> str:
        return f"{self.app_id}-in"

    @property
    def layout(self) -> KeyLayout:
        return KeyLayout(self.app_id, TABLE)

    def client(self) -> redis.Redis | redis.cluster.RedisCluster:
        return StoreConfig.from_url(self.redis_url).sync_client()

    def topics(self) -> list[str]:
        return [
            self.topic,
            f"{self.app_id}-{TABLE}-changelog",
            f"{self.app_id}-__assignor-__leader",
        ]

    async def create_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap())
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.topic, self.partitions, 1)])
        finally:
            await admin.close()

    async def delete_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap())
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            doomed = [t for t in self.topics() if t in existing]
            if doomed:
                await admin.delete_topics(doomed)
        finally:
            await admin.close()

    def start_worker(self, store_options: str = "flush_interval=0.2") -> Worker:
        index = len(self.workers)
        log = self.tmp / f"worker{index}.log"
        stats = self.tmp / f"worker{index}.stats.json"
        url = URL(self.redis_url)
        url = url.with_query({**url.query, **dict(URL(f"x:?{store_options}").query)})
        env = {
            **os.environ,
            "STORE_TEST_APP_ID": self.app_id,
            "STORE_TEST_TOPIC": self.topic,
            "STORE_TEST_PARTITIONS": str(self.partitions),
            "STORE_TEST_STATS": str(stats),
            "STORE_TEST_REDIS_URL": str(url),
            "LTV_BROKER": BROKER,
            "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent.parent)]),
        }
        process = subprocess.Popen(
            [
                str(FAUST),
                "-A",
                "store_worker",
                "--datadir",
                str(self.tmp / f"d{index}"),
                "worker",
                "-l",
                os.environ.get("STORE_TEST_LOGLEVEL", "warn"),
                "--without-web",
            ],
            cwd=HERE,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = Worker(process, log, stats)
        self.workers.append(worker)
        return worker

    async def produce(self, count: int, keys: int, duplicates: int = 0) -> None:
        """Send ``count`` new events over ``keys`` keys, plus re-sends of old ids."""
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap(), linger_ms=5)
        await producer.start()
        try:
            sent: list[tuple[bytes, str]] = []
            for _ in range(count):
                key = f"c-{self._seq % keys}".encode()
                event_id = f"e-{self._seq}"
                self._seq += 1
                sent.append((key, event_id))
                self.oracle.setdefault(key, set()).add(event_id)
                await producer.send(self.topic, key=key, value=event_id.encode())
            for key, event_id in sent[:duplicates]:
                await producer.send(self.topic, key=key, value=event_id.encode())
            await producer.flush()
        finally:
            await producer.stop()

    def state(self) -> dict[bytes, tuple[int, list[str]]]:
        """Read the table straight from Redis: key -> (n, ids)."""
        client = self.client()
        result: dict[bytes, tuple[int, list[str]]] = {}
        for partition in range(self.partitions):
            for key, raw in client.hgetall(self.layout.data_key(partition)).items():
                value = json.loads(raw)
                result[json.loads(key).encode()] = (value["n"], value["ids"])
        return result

    def matches_oracle(self) -> bool:
        state = self.state()
        return set(state) == set(self.oracle) and all(
            n == len(self.oracle[k]) and set(ids) == self.oracle[k] for k, (n, ids) in state.items()
        )

    async def wait_oracle(self, timeout: float = 60.0) -> None:
        def check() -> bool:
            for worker in self.workers:
                code = worker.process.poll()
                if code not in (None, 0, -signal.SIGKILL, -signal.SIGTERM):
                    pytest.fail(f"worker exited with {code}:\n{worker.tail()}")
            return self.matches_oracle()

        try:
            await wait_for(check, timeout, "Redis state to equal the oracle")
        except pytest.fail.Exception as exc:
            logs = "".join(f"\n--- worker {i} ---\n{w.tail()}" for i, w in enumerate(self.workers))
            raise AssertionError(f"{exc}; state {self.state()}; logs:{logs}") from None
        for key, (n, ids) in self.state().items():
            assert len(ids) == len(set(ids)) == n, f"{key!r} applied an event twice: {ids}"

    def stored_offsets(self) -> dict[int, int | None]:
        client = self.client()
        return {
            p: (
                None
                if (raw := client.hget(self.layout.meta_key(p), "offset")) is None
                else int(raw)
            )
            for p in range(self.partitions)
        }

    def wipe_redis(self) -> None:
        client = self.client()
        for key in client.scan_iter(match=self.layout.scan_pattern(), count=1000):
            client.delete(key)

    async def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.wipe_redis()
        await self.delete_topics()


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
async def world(tmp_path: Path, redis_url: str) -> AsyncIterator[StoreWorld]:
    """A fresh app id + topics on the real servers, removed afterwards."""
    require_servers(redis_url)
    world = StoreWorld(tmp_path, redis_url)
    await world.create_topics()
    try:
        yield world
    finally:
        await world.close()


def spawn_redis_cluster(tmp: Path, ports: list[int]) -> Iterator[str]:
    """Start a 3-master Redis Cluster with Debian's redis-server; yield its URL."""
    processes = []
    try:
        for port in ports:
            node = tmp / str(port)
            node.mkdir()
            processes.append(
                subprocess.Popen(
                    [
                        "redis-server",
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--appendonly",
                        "no",
                        "--save",
                        "",
                        "--dir",
                        str(node),
                    ],
                    stdout=(node / "log").open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
        for port in ports:
            _wait_port(port)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while (
            b"cluster_state:ok"
            not in subprocess.run(
                ["redis-cli", "-p", str(ports[0]), "cluster", "info"],
                capture_output=True,
                timeout=5,
            ).stdout
        ):
            if time.monotonic() > deadline:
                pytest.fail("Redis Cluster did not reach cluster_state:ok in 20s")
            time.sleep(0.1)
        yield f"redis+cluster://127.0.0.1:{ports[0]}/0"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {port} did not start in {timeout:.0f}s")
            time.sleep(0.05)


def free_ports(count: int) -> list[int]:
    """Return ``count`` loopback ports free right now (and their +10000 bus ports)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 < 65536 and port not in ports:
            ports.append(port)
    return ports
