"""/readyz explains itself: the reason of a failing check is logged once per change."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis.exceptions

from streams.views import ReadinessLog, readiness_problems, redis_problem

READY: dict[str, Any] = {
    "redis": True,
    "store": True,
    "kafka": True,
    "partitions_assigned": 4,
    "recovery_done": True,
}


class FakeRedis:
    """Answers PING the way it is told to."""

    def __init__(self, answer: Any = True, error: Exception | None = None, delay: float = 0):
        self.answer, self.error, self.delay = answer, error, delay

    async def ping(self) -> Any:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.answer


async def test_redis_problem_names_the_failure() -> None:
    assert await redis_problem(FakeRedis()) is None
    auth = redis.exceptions.AuthenticationError("invalid username-password pair")
    assert await redis_problem(FakeRedis(error=auth)) == (
        "AuthenticationError: invalid username-password pair"
    )
    assert await redis_problem(FakeRedis(answer=False)) == "PING not answered"


async def test_redis_problem_masks_urls_in_messages() -> None:
    error = redis.exceptions.ConnectionError("cannot reach redis://:s3cret@h:6379/0")
    problem = await redis_problem(FakeRedis(error=error))
    assert problem is not None and "s3cret" not in problem


async def test_redis_problem_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streams.views.PING_TIMEOUT", 0.01)
    assert await redis_problem(FakeRedis(delay=1.0)) == "no answer to PING within 0.01 s"


def test_problems_name_every_failing_check() -> None:
    assert readiness_problems(READY, None) == []
    failing = {**READY, "store": False, "partitions_assigned": 0, "recovery_done": False}
    problems = readiness_problems(failing, "AuthenticationError: nope")
    assert problems[0] == "redis unreachable (AuthenticationError: nope)"
    assert any("store not ready" in p for p in problems)
    assert "no input partitions assigned" in problems
    assert any("recovery" in p for p in problems)
    assert readiness_problems({**READY, "kafka": False}, None)[0].startswith("kafka:")


def test_reason_is_logged_once_per_change_and_once_on_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = ReadinessLog(logging.getLogger("test.readiness"))
    with caplog.at_level(logging.INFO, logger="test.readiness"):
        for _ in range(5):
            log.observe(["redis unreachable (AuthenticationError: nope)"])
        for _ in range(3):
            log.observe(["redis unreachable (TimeoutError)"])
        for _ in range(4):
            log.observe([])
        log.observe(["no input partitions assigned"])
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "readiness: not ready: redis unreachable (AuthenticationError: nope)"),
        ("WARNING", "readiness: not ready: redis unreachable (TimeoutError)"),
        ("INFO", "readiness: ready"),
        ("WARNING", "readiness: not ready: no input partitions assigned"),
    ]


def test_first_probe_is_logged_even_when_ready(caplog: pytest.LogCaptureFixture) -> None:
    log = ReadinessLog(logging.getLogger("test.readiness"))
    with caplog.at_level(logging.INFO, logger="test.readiness"):
        log.observe([])
        log.observe([])
    assert [r.getMessage() for r in caplog.records] == ["readiness: ready"]
