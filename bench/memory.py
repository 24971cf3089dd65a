"""Memory: worker peak RSS and Redis bytes per customer with N customers in state.

For each size (default 100 000 and 1 000 000) the state is written straight
into Redis and the changelog (``_population``), then one worker starts and
drains ``--events`` purchases of random existing customers (so its read
cache and write buffer fill the way a live worker's do). Reported: the
worker's peak RSS (VmHWM) after the drain, and Redis ``used_memory`` growth
per customer (value hash entry + schedule entry + the per-key overhead).

    ltv bench memory [--customers 100000 1000000] [--events 100000] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio

from _harness import (
    Infra,
    Worker,
    add_common_args,
    cleanup,
    drain_rate,
    infra,
    report,
    run_id,
    running,
    settings_env,
    settings_for,
    size_suffix,
)
from _population import populate, purchases

from streams.publisher import publish


def measure(n: int, events: int, servers: Infra, timeout: float) -> dict[str, float]:
    app_id = run_id()
    env = settings_env(app_id, app_id, servers)
    settings = settings_for(env)
    try:
        figures = populate(n, settings, servers)
        sent = asyncio.run(publish(purchases(n, events, app_id), settings))
        worker = Worker(f"{app_id}-memory", env)
        worker.start()
        with running(worker):
            rate = drain_rate([worker], sent, timeout).events_per_s
            figures.update(
                events=sent, events_per_s=round(rate), worker_rss_bytes=worker.peak_rss()
            )
        return figures
    finally:
        cleanup((app_id,), servers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--events", type=int, default=100_000)
    add_common_args(parser)
    args = parser.parse_args(argv)
    figures: dict[str, float] = {}
    for n in args.customers:
        one = measure(n, args.events, infra(args), args.timeout)
        report(f"memory, {n} customers", one, None)
        figures[f"worker_rss_bytes_{size_suffix(n)}"] = one["worker_rss_bytes"]
        figures[f"redis_bytes_per_customer_{size_suffix(n)}"] = one["redis_bytes_per_customer"]
    # The reported key: the largest population's figure (per-customer cost falls with N).
    figures["redis_bytes_per_customer"] = figures[f"redis_bytes_per_customer_{size_suffix(n)}"]
    report("memory", figures, args.json)


if __name__ == "__main__":
    main()
