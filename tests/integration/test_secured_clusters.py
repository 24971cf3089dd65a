"""A worker against a SCRAM-authenticated Kafka and a password-protected Redis.

Both servers are private (tests/integration/secured_infra.py: free loopback
ports, temporary directories): nothing here reaches the shared servers on
9092 / 6379. With the right credentials ``ltv demo`` publishes, the worker
values and ``ltv watch`` reads the updates, all authenticated; a wrong Kafka
password ends ``ltv worker`` with one line naming the authentication
failure; a wrong Redis password keeps /readyz at 503 with ``redis: false``
and the reason logged. No secret ever shows in what the processes print.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest
from pipeline_harness import ROOT, Deployment, WorkerProcess, free_port, wait_until
from secured_infra import MECHANISM, SecuredKafka, SecuredRedis

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

KAFKA_USER = "ltv"
KAFKA_PASSWORD = f"kafka-secret-{uuid.uuid4().hex}"
REDIS_PASSWORD = f"redis-secret-{uuid.uuid4().hex}"
WRONG_KAFKA_PASSWORD = f"wrong-kafka-{uuid.uuid4().hex}"
WRONG_REDIS_PASSWORD = f"wrong-redis-{uuid.uuid4().hex}"
SECRETS = (KAFKA_PASSWORD, REDIS_PASSWORD, WRONG_KAFKA_PASSWORD, WRONG_REDIS_PASSWORD)


@dataclass(frozen=True)
class Servers:
    kafka: SecuredKafka
    redis: SecuredRedis

    def deployment(
        self,
        tmp: Path,
        *,
        kafka_password: str = KAFKA_PASSWORD,
        redis_password: str = REDIS_PASSWORD,
    ) -> Deployment:
        """A deployment on these servers authenticating with the given passwords."""
        return Deployment(
            tmp,
            partitions=2,
            bootstrap=self.kafka.bootstrap,
            # A store option in the URL too: the readiness check must parse it as the store does.
            redis_url=self.redis.url(redis_password) + "?cache_size=5000",
            extra_env={
                "LTV_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "LTV_KAFKA_SASL_MECHANISM": MECHANISM,
                "LTV_KAFKA_SASL_USERNAME": KAFKA_USER,
                "LTV_KAFKA_SASL_PASSWORD": kafka_password,
            },
        )


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    kafka = SecuredKafka(KAFKA_USER, KAFKA_PASSWORD)
    redis = SecuredRedis(REDIS_PASSWORD)
    try:
        kafka.start()
        redis.start()
        yield Servers(kafka, redis)
    finally:
        try:
            kafka.close()
        finally:
            redis.close()


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, "a password was printed"


def test_right_credentials_work_end_to_end(servers: Servers, tmp_path: Path) -> None:
    dep = servers.deployment(tmp_path)
    try:
        worker = dep.start_worker(timeout=120)
        demo = dep.ltv(worker, "demo", "--customers", "3", "--count", "30", "--rate", "0")
        assert demo.returncode == 0, demo.stderr
        watched = dep.ltv(
            worker, "watch", dep.updates, "--from-beginning", "--count", "3", "--timeout", "90"
        )
        assert watched.returncode == 0, watched.stderr
        lines = watched.stdout.splitlines()
        assert len(lines) >= 3
        assert all("version=" in line for line in lines), lines
        status, body = worker.get("/readyz")
        assert status == 200, body
        for result in (demo, watched):
            assert_no_secret(result.stdout + result.stderr)
    finally:
        for started in dep.workers:
            started.stop()
    log = dep.workers[0].log_path.read_text(errors="replace")
    assert "readiness: ready" in log
    assert_no_secret(log)


def test_wrong_kafka_password_fails_with_one_line(servers: Servers, tmp_path: Path) -> None:
    dep = servers.deployment(tmp_path, kafka_password=WRONG_KAFKA_PASSWORD)
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=dep.env(free_port()),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("ltv: cannot use Kafka at"), output
    assert "SaslAuthenticationFailed" in output, output
    assert "Traceback" not in output
    assert_no_secret(output)


def test_wrong_redis_password_keeps_readiness_false_with_reason(
    servers: Servers, tmp_path: Path
) -> None:
    dep = servers.deployment(tmp_path, redis_password=WRONG_REDIS_PASSWORD)
    worker = WorkerProcess(dep, free_port(), tmp_path / "worker.log")
    dep.workers.append(worker)
    worker.start()
    reason = "readiness: not ready: redis unreachable (AuthenticationError"
    try:

        def reported() -> bool:
            assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
            try:
                status, body = worker.get("/readyz")
            except OSError:
                return False  # the web server is not up yet
            checks = json.loads(body)["checks"]
            return status == 503 and checks["redis"] is False and reason in worker.tail(400)

        wait_until(
            reported, 120, lambda: f"no redis reason in /readyz or the log:\n{worker.tail()}"
        )
        logged = readiness_lines(worker)
        # Probed again while nothing changes: nothing more is logged.
        for _ in range(3):
            assert worker.get("/readyz")[0] == 503
        assert readiness_lines(worker) == logged
    finally:
        worker.stop()
    # A line only when the reason changes: never the same one twice in a row.
    assert all(a != b for a, b in pairwise(logged)), logged
    assert_no_secret(worker.log_path.read_text(errors="replace"))


def readiness_lines(worker: WorkerProcess) -> list[str]:
    """What the worker logged about its readiness so far, in order."""
    text = worker.log_path.read_text(errors="replace")
    return [line.partition("readiness: ")[2] for line in text.splitlines() if "readiness: " in line]
