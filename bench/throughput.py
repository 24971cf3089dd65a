"""Throughput: a worker, a raw aiokafka loop, Quix Streams and two workers drain the same events.

N events of the bench feed (default 200 000 over 100 000 customers: ~85 %
purchases, ~10 % cancellations, ~5 % re-sent duplicates) are published once
to fresh input topics. Then, each as its own consumer group over the same
topics on the same broker:

* ``worker``: one ``ltv worker`` (Redis-backed state, every output
  published), timed from its first processed event to its last (/metrics);
* ``baseline``: a raw aiokafka loop in this process that consumes, decodes
  the JSON, aggregates a per-customer dict and produces one output per
  event -- the floor cost of moving these records through Python;
* ``quix_processor``: this project's ``Processor`` in a Quix Streams app
  (RocksDB state, every output published; bench/_quix.py, the ``bench``
  extra), timed from its first handled record to its last -- what another
  Python streaming framework makes of the same per-event work;
* ``two_workers``: two ``ltv worker`` processes of one group;
* ``worker_uvloop`` (``--uvloop``): one ``ltv worker`` with
  ``LTV_EVENT_LOOP=uvloop``.

Every contender values with the same model, fitted on the run's events and
stored before the first drain (``_harness.fitted_model``), as the periodic
fit would have stored it. With ``--own-fit`` no model is stored first and
the workers fit as their tables grow (a backfill), Quix Streams left out.

The ratios: ``ratio`` (worker / baseline), ``worker_per_quix_processor``,
``two_workers_per_worker`` and ``uvloop_per_asyncio``.

    ltv bench throughput [--events 200000] [--customers 100000] [--no-quix] [--uvloop]
                         [--own-fit] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson
from _harness import (
    LOG_DIR,
    ROOT,
    Drain,
    Infra,
    Profiler,
    Worker,
    add_common_args,
    cleanup,
    drain_rate,
    fitted_model,
    infra,
    install_model,
    preload,
    print_profile,
    report,
    run_id,
    running,
    settings_env,
    settings_for,
)
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def baseline(topics: list[str], output: str, total: int, servers: Infra) -> float:
    """Events/s of a plain consume -> aggregate -> produce loop over ``total`` records."""
    consumer = AIOKafkaConsumer(
        *topics,
        **servers.kafka(),
        group_id=f"{output}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
    )
    producer = AIOKafkaProducer(**servers.kafka(), linger_ms=5)
    await consumer.start()
    await producer.start()
    totals: dict[bytes, float] = defaultdict(float)
    seen = 0
    first: float | None = None
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            if first is None and batches:
                first = time.monotonic()
            for records in batches.values():
                for record in records:
                    body = orjson.loads(record.value or b"{}")
                    key = record.key or b""
                    totals[key] += float(body.get("amount") or 0)
                    out = orjson.dumps(
                        {"customer_id": body.get("customer_id"), "total": totals[key]}
                    )
                    await producer.send(output, out, key=key)
                    seen += 1
        await producer.flush()
        assert first is not None
        return total / (time.monotonic() - first)
    finally:
        await producer.stop()
        await consumer.stop()


#: Seconds the Quix contender may take beyond the drain timeout to start and stop.
QUIX_SLACK = 120


def quix_processor(topics: str, app_id: str, total: int, servers: Infra, timeout: float) -> Drain:
    """How bench/_quix.py (the Processor under Quix Streams) drained ``total`` records.

    A process of its own, as the workers are: its log goes next to theirs,
    its RocksDB state under the bench's log dir, removed afterwards.
    """
    log = LOG_DIR / f"{app_id}.log"
    state_dir = LOG_DIR / f"{app_id}.state"
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    command = [
        *(sys.executable, str(Path(__file__).with_name("_quix.py"))),
        *("--topics", topics, "--app-id", app_id, "--events", str(total)),
        *("--state-dir", str(state_dir)),
        *("--bootstrap", servers.bootstrap, "--redis-url", servers.redis_url),
    ]
    # This checkout's packages, as the workers get them (``-m`` run from ROOT):
    # an installed ltv-stream may be another checkout's.
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    try:
        with open(log, "ab") as stderr:
            done = subprocess.run(
                command,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": path},
                stdout=subprocess.PIPE,
                stderr=stderr,
                timeout=timeout + QUIX_SLACK,
            )
    except subprocess.TimeoutExpired:
        raise SystemExit(
            f"bench: quix_processor did not handle {total} events within {timeout:.0f}s; see {log}"
        ) from None
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: quix_processor exited with status {done.returncode}; see {log}")
    return Drain(**json.loads(done.stdout.splitlines()[-1]))


def run(
    events: int,
    customers: int,
    servers: Infra,
    timeout: float,
    two: bool,
    quix: bool,
    uvloop: bool = False,
    profile: Path | None = None,
    own_fit: bool = False,
) -> dict[str, float]:
    topics = run_id()
    one, pair, quix_id = f"{topics}w1", f"{topics}w2", f"{topics}q"
    settings = settings_for(settings_env(topics, one, servers))
    try:
        loaded = preload(settings, events, customers)
        if not own_fit:
            model = fitted_model(settings, loaded, customers)
            install_model(model, (one, pair, quix_id, f"{topics}u"), servers)
        worker = Worker(f"{one}-a", settings_env(topics, one, servers))
        worker.start()
        with running(worker):
            profiler = None if profile is None else Profiler(worker.pid, profile)
            drain = drain_rate([worker], loaded, timeout)
            if profiler is not None:
                profiler.stop()
                print_profile(profiler.summary())
        inputs = [settings.topic_purchases, settings.topic_cancellations]
        base_rate = asyncio.run(baseline(inputs, f"{topics}.baseline", loaded, servers))
        figures: dict[str, float] = {
            "events": loaded,
            "worker_seconds": round(drain.seconds, 2),
            "worker_events_per_s": round(drain.events_per_s),
            "worker_cpu_share": round(drain.cpu_share, 2),
            "worker_machine_cores": round(drain.machine_cores, 2),
            "baseline_events_per_s": round(base_rate),
            "ratio": round(drain.events_per_s / base_rate, 3),
        }
        if uvloop:
            looped = Worker(
                f"{topics}u-a",
                {**settings_env(topics, f"{topics}u", servers), "LTV_EVENT_LOOP": "uvloop"},
            )
            looped.start()
            with running(looped):
                fast = drain_rate([looped], loaded, timeout)
            figures["worker_uvloop_events_per_s"] = round(fast.events_per_s)
            figures["worker_uvloop_cpu_share"] = round(fast.cpu_share, 2)
            figures["uvloop_per_asyncio"] = round(fast.events_per_s / drain.events_per_s, 3)
        if quix:
            framework = quix_processor(topics, quix_id, loaded, servers, timeout)
            figures["quix_processor_events_per_s"] = round(framework.events_per_s)
            figures["quix_processor_cpu_share"] = round(framework.cpu_share, 2)
            figures["worker_per_quix_processor"] = round(
                drain.events_per_s / framework.events_per_s, 3
            )
        if two:
            workers = [Worker(f"{pair}-{n}", settings_env(topics, pair, servers)) for n in "ab"]
            for w in workers:
                w.start()
            with running(*workers):
                both = drain_rate(workers, loaded, timeout)
            figures["two_workers_events_per_s"] = round(both.events_per_s)
            figures["two_workers_cpu_share"] = round(both.cpu_share, 2)
            figures["two_workers_machine_cores"] = round(both.machine_cores, 2)
            figures["two_workers_per_worker"] = round(both.events_per_s / drain.events_per_s, 3)
        return figures
    finally:
        # Quix names its changelog topics after the consumer group, behind a prefix.
        cleanup((topics, f"changelog__{quix_id}"), servers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--no-two-workers", dest="two", action="store_false")
    parser.add_argument(
        "--no-quix", dest="quix", action="store_false", help="skip the Quix Streams contender"
    )
    parser.add_argument(
        "--uvloop", action="store_true", help="also drain with one worker on uvloop"
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy the worker's drain into this file"
    )
    parser.add_argument(
        "--own-fit",
        action="store_true",
        help="store no model first: the workers fit as their tables grow, as in a backfill "
        "(what the periodic fit costs them); implies --no-quix",
    )
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.own_fit:
        args.quix = False
    if args.quix and importlib.util.find_spec("quixstreams") is None:
        raise SystemExit(
            "bench: the quix_processor contender needs quixstreams, a bench extra "
            "(pip install -e '.[bench]'); or pass --no-quix"
        )
    servers = infra(args)
    if args.uvloop and importlib.util.find_spec("uvloop") is None:
        raise SystemExit("bench: --uvloop needs uvloop, a bench extra (pip install -e '.[bench]')")
    figures = run(
        args.events,
        args.customers,
        servers,
        args.timeout,
        args.two,
        args.quix,
        uvloop=args.uvloop,
        profile=args.profile,
        own_fit=args.own_fit,
    )
    report("throughput", figures, args.json)


if __name__ == "__main__":
    main()
