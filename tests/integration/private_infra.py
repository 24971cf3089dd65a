"""A private Kafka and/or Redis for tests that stop or restart a server.

The shared servers of scripts/infra (127.0.0.1:9092, :6379) are in use by
others and must never be restarted. ``PrivateInfra`` runs the same script
with its own LTV_VAR_DIR (a temporary directory) and free loopback ports,
so a test can stop and start its own servers; ``close`` stops whatever is
still running and removes the directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pipeline_harness import ROOT, free_port

INFRA = ROOT / "scripts" / "infra"


class PrivateInfra:
    """scripts/infra under a temporary LTV_VAR_DIR on free ports of 127.0.0.1."""

    def __init__(self) -> None:
        self.var_dir = Path(tempfile.mkdtemp(prefix="ltv-private-"))
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_port())
        self.kafka_port, self.controller_port, self.redis_port = sorted(ports)
        self.services: set[str] = set()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def _infra(self, *args: str, timeout: float = 180.0) -> None:
        env = {
            **os.environ,
            "LTV_VAR_DIR": str(self.var_dir),
            "LTV_KAFKA_PORT": str(self.kafka_port),
            "LTV_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "LTV_REDIS_PORT": str(self.redis_port),
            "LTV_STOP_TIMEOUT": "30",
        }
        done = subprocess.run(
            [str(INFRA), *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"scripts/infra {' '.join(args)} failed:\n{done.stderr[-3000:]}")

    def up(self, *services: str) -> None:
        """Start (or start again, on the same data) ``services``."""
        self._infra("up", *services)
        self.services.update(services)

    def down(self, *services: str) -> None:
        """Stop ``services`` (TERM, then KILL after 30 s); their data stays."""
        self._infra("down", *services)
        self.services.difference_update(services)

    def close(self) -> None:
        try:
            if self.services:
                self.down(*sorted(self.services))
        finally:
            shutil.rmtree(self.var_dir, ignore_errors=True)
