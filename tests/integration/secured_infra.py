"""A private SCRAM-authenticated Kafka and a password-protected Redis, for tests.

``SecuredKafka`` runs Kafka 4.4 (KRaft, one combined node) from the jars
scripts/infra caches (~/.cache/ltv-stream, never modified here) with a
SASL_PLAINTEXT listener that accepts SCRAM-SHA-256 only; the user is
created when the storage is formatted (``--add-scram``). Inter-broker
traffic and the controller stay on PLAINTEXT listeners of their own.
``SecuredRedis`` is a redis-server with ``requirepass``. Both bind free
loopback ports and live in a temporary directory that ``close`` removes
with the process: the shared servers on 9092 / 6379 are never touched.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import redis
from aiokafka.admin import AIOKafkaAdminClient
from pipeline_harness import ROOT, free_port

CACHE = Path(os.environ.get("LTV_CACHE_DIR", Path.home() / ".cache" / "ltv-stream"))
KAFKA_LIBS = CACHE / f"kafka-{os.environ.get('LTV_KAFKA_VERSION', '4.4.0')}" / "libs"
LOG4J = ROOT / "scripts" / "kafka" / "log4j2.properties"
MECHANISM = "SCRAM-SHA-256"
#: The broker side of SCRAM: users and their salted passwords come from KRaft metadata.
_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"

_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=SASL_PLAINTEXT://127.0.0.1:{port},REPLICATION://127.0.0.1:{replication},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{port},REPLICATION://127.0.0.1:{replication}
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,REPLICATION:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=REPLICATION
controller.listener.names=CONTROLLER
sasl.enabled.mechanisms={mechanism}
listener.name.sasl_plaintext.{mechanism_lower}.sasl.jaas.config={jaas}
num.network.threads=2
num.io.threads=2
log.dirs={data}
num.partitions=1
log.cleaner.dedupe.buffer.size=16777216
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
"""


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 (not starting with '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class SecuredKafka:
    """One KRaft node whose client listener requires SCRAM-SHA-256 (user ``username``)."""

    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password
        self.dir = Path(tempfile.mkdtemp(prefix="ltv-secured-kafka-"))
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_port())
        self.port, self.replication_port, self.controller_port = sorted(ports)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "kafka.out"

    def _java(self, *args: str) -> list[str]:
        return [
            "java",
            f"-Dlog4j2.configurationFile={LOG4J}",
            f"-Dkafka.logs.dir={self.dir}",
            "-cp",
            f"{KAFKA_LIBS}/*",
            *args,
        ]

    def start(self, timeout: float = 120.0) -> None:
        """Format the storage with the SCRAM user, start the node, wait until it serves."""
        if not KAFKA_LIBS.is_dir():
            raise RuntimeError(f"no Kafka jars in {KAFKA_LIBS}; run scripts/infra up once")
        props = self.dir / "server.properties"
        props.write_text(
            _PROPERTIES.format(
                port=self.port,
                replication=self.replication_port,
                controller=self.controller_port,
                data=self.dir / "data",
                mechanism=MECHANISM,
                mechanism_lower=MECHANISM.lower(),
                jaas=_JAAS,
            )
        )
        scram = f"{MECHANISM}=[name={self.username},password={self.password}]"
        format_cmd = self._java(
            "-Xmx256m",
            "kafka.tools.StorageTool",
            *("format", "-t", _cluster_id(), "-c", str(props), "--add-scram", scram),
        )
        done = subprocess.run(format_cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"kafka storage format failed:\n{done.stdout}\n{done.stderr}")
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self._java("-Xms384m", "-Xmx384m", "kafka.Kafka", str(props)),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        asyncio.run(self._wait_serving(timeout))

    async def _wait_serving(self, timeout: float) -> None:
        """Until an authenticated metadata request succeeds (the listener opens once unfenced)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"kafka exited during start-up:\n{self.tail()}")
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                security_protocol="SASL_PLAINTEXT",
                sasl_mechanism=MECHANISM,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
                request_timeout_ms=5000,
            )
            try:
                await admin.start()
                await admin.list_topics()
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"kafka not serving after {timeout}s:\n{self.tail()}"
                    ) from exc
                await asyncio.sleep(0.5)  # the broker offers nothing to await: poll
            finally:
                await admin.close()

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        try:
            _stop(self.proc, 60.0)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class SecuredRedis:
    """A redis-server on a free loopback port that requires ``password`` (AUTH)."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.dir = Path(tempfile.mkdtemp(prefix="ltv-secured-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, password: str) -> str:
        """The store URL of this server, authenticating with ``password``."""
        return f"redis://:{password}@127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [
                *("redis-server", "--bind", "127.0.0.1", "--port", str(self.port)),
                *("--requirepass", self.password, "--dir", str(self.dir)),
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
                *("--logfile", str(self.dir / "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis.from_url(self.url(self.password), socket_timeout=2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # the port opens without a signal: poll
            finally:
                client.close()

    def close(self) -> None:
        try:
            _stop(self.proc, 30.0)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """TERM the process group we started, KILL it if it outlives ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
