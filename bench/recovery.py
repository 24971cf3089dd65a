"""Recovery: kill -9 a worker with N customers in state; seconds until a new event is processed.

For each size (default 100 000 and 1 000 000 customers) the state is
written straight into Redis and the changelog (``_population``: not through
a worker, which would take far longer than the measurement), one worker
starts and processes an event, and is killed with SIGKILL. A new event is
then published and a new worker started; ``recovery_s`` runs from that
spawn (Python start, Faust start, group join, partition claim, changelog
offset check) to the new event's processing on /metrics. Redis is intact,
so the changelog must not be replayed: the time should not grow with N.

Workers use static group membership (Faust's CONSUMER_GROUP_INSTANCE_ID,
one id per worker): the restarted worker takes over its killed
predecessor's partitions at once instead of waiting for the broker's
session timeout (60 s) to expire the dead member.

    ltv bench recovery [--customers 100000 1000000] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _harness import (
    Infra,
    Worker,
    add_common_args,
    cleanup,
    infra,
    report,
    run_id,
    running,
    settings_env,
    settings_for,
    size_suffix,
    wait_until,
)
from _population import populate, purchases

from streams.publisher import publish
from streams.settings import Settings


def _publish_one(settings: Settings, population: int, tag: str) -> None:
    asyncio.run(publish(purchases(population, 1, tag), settings))


def measure(n: int, servers: Infra, timeout: float, static: bool) -> dict[str, float]:
    app_id = run_id()
    env = settings_env(app_id, app_id, servers)
    settings = settings_for(env)
    extra = {"CONSUMER_GROUP_INSTANCE_ID": f"{app_id}-1"} if static else {}
    try:
        figures = populate(n, settings, servers)
        first = Worker(f"{app_id}-first", env, extra_env=extra)
        started = first.start()
        with running(first):
            ready = wait_until(first.ready, timeout, "the first worker's /readyz")
            _publish_one(settings, n, "before")
            wait_until(lambda: first.processed() >= 1, timeout, "the first worker's event")
            time.sleep(1.5)  # let the store flush: the state of a running service
            first.kill()
        _publish_one(settings, n, "after")
        # Same web address: a static member's assignment is replayed to it, and
        # Faust's assignor checks that the URL in it is its own.
        second = Worker(f"{app_id}-second", env, port=first.port, extra_env=extra)
        spawned = second.start()
        with running(second):
            done = wait_until(lambda: second.processed() >= 1, timeout, "the restarted worker")
            back = wait_until(second.ready, timeout, "the restarted worker's /readyz")
        figures.update(
            cold_start_ready_s=round(ready - started, 2),
            recovery_s=round(done - spawned, 2),
            recovery_ready_s=round(back - spawned, 2),
        )
        return figures
    finally:
        cleanup((app_id,), servers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--dynamic-membership",
        dest="static",
        action="store_false",
        help="no group instance id: the restart waits for the session timeout",
    )
    add_common_args(parser)
    args = parser.parse_args(argv)
    figures: dict[str, float] = {}
    for n in args.customers:
        one = measure(n, infra(args), args.timeout, args.static)
        report(f"recovery, {n} customers", one, None)
        suffix = size_suffix(n)
        figures[f"recovery_s_{suffix}"] = one["recovery_s"]
        figures[f"recovery_ready_s_{suffix}"] = one["recovery_ready_s"]
    report("recovery", figures, args.json)


if __name__ == "__main__":
    main()
