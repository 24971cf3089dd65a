"""Fault injection: at-least-once on the wire, exactly-once in state.

Every case sends a seeded mixed stream (mixed_stream: three years of history
sent out of order, duplicates at any distance, racing cancellations,
garbage), injects its fault, and then compares what the workers did with an
oracle computed from the exact input:

* ltv.updates read as a consumer would: per customer, versions 1..V with no
  gap once replays are dropped, replays equal to the first copy, the newest
  equal to the oracle's final state (case 6, checked in every case);
* ltv.dead-letter: every bad record once (replays of one source record
  counted once), with the code of its failure class, and unknown_order
  notices only for cancellations the purchases input could have passed;
* the states in Redis, decoded with state.codec, equal the oracle's;
* GET /customers/{id} of a sample of customers.

SHORT sizes run in ``make test``; ``LTV_RELIABILITY=long`` (or
``-m reliability_long``) runs the long sizes and the long-only cases. A
summary table is written at the end of the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from mixed_stream import (
    KafkaRecord,
    MixedStream,
    Oracle,
    Report,
    build_stream,
    check_dead_letters,
    check_insights,
    check_stored,
    check_updates,
    expected_figures,
    source_letters,
    stored_states,
    stored_sums,
)
from pipeline_harness import (
    Deployment,
    WorkerProcess,
    consume_raw,
    key_history,
    produce,
    require_servers,
    wait_until,
)
from private_infra import PrivateInfra

from ltv.insights import InsightsConfig
from state import envelope

LONG = os.environ.get("LTV_RELIABILITY", "short") == "long"


def size(short: int, long: int) -> int:
    return long if LONG else short


pytestmark = [
    pytest.mark.integration,
    pytest.mark.reliability,
    pytest.mark.timeout(3600 if LONG else 420),
]

#: The oracle models event-driven transitions only: no inactivity tick within a
#: case (time-driven risk changes and notices have their own integration tests).
REPLAY = {"LTV_INACTIVITY_INTERVAL": "86400"}
#: A killed worker leaves the group after 6 s (the broker's minimum), not Faust's 60 s.
FAST_GROUP = {**REPLAY, "BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "1"}
#: Longest wait for the outputs of a whole stream.
DRAIN_TIMEOUT = 600.0 if LONG else 120.0


@dataclass
class Row:
    case: str
    report: Report
    seconds: float


ROWS: list[Row] = []


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print one line per case when the module ends (shown with or without -s)."""
    yield
    lines = [
        "",
        f"reliability summary ({'long' if LONG else 'short'})",
        f"{'case':<34}{'events in':>10}{'applied':>9}{'dups':>7}{'dead':>7}"
        f"{'replayed':>9}{'mismatch':>9}{'wall s':>8}",
    ]
    for row in ROWS:
        r = row.report
        lines.append(
            f"{row.case:<34}{r.events_in:>10}{r.applied:>9}{r.duplicates_dropped:>7}"
            f"{r.dead_lettered:>7}{r.replayed_outputs:>9}{r.mismatches:>9}{row.seconds:>8.1f}"
        )
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    text = "\n".join(lines)
    if reporter is not None:
        reporter.write_line(text)
    else:
        print(text)


@pytest.fixture
def private() -> Iterator[PrivateInfra]:
    """Private servers for cases that stop them; each test starts what it needs."""
    infra = PrivateInfra()
    try:
        yield infra
    finally:
        infra.close()


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Callable[..., Deployment]]:
    """Make Deployments (removed afterwards, on whatever servers they use)."""
    made: list[Deployment] = []

    def make(**kwargs: Any) -> Deployment:
        dep = Deployment(tmp_path / f"d{len(made)}", **kwargs)
        dep.tmp.mkdir()
        made.append(dep)
        return dep

    try:
        yield make
    finally:
        for dep in made:
            await dep.cleanup()


# --------------------------------------------------------------------------- helpers


def metric(worker: WorkerProcess, name: str) -> float:
    """Sum of a counter's series on the worker's /metrics (0 when unreachable)."""
    try:
        status, body = worker.get("/metrics")
    except OSError:
        return 0.0
    if status != 200:
        return 0.0
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_consumed(worker: WorkerProcess, count: int, timeout: float = 120.0) -> None:
    """Wait until this worker process has consumed ``count`` input records."""
    wait_until(
        lambda: metric(worker, "ltv_events_consumed_total") >= count,
        timeout,
        lambda: f"worker consumed fewer than {count} records in {timeout}s:\n{worker.tail()}",
    )


def slices(records: list[KafkaRecord], n: int) -> list[list[KafkaRecord]]:
    step = -(-len(records) // n)
    return [records[i : i + step] for i in range(0, len(records), step)]


def distinct_versions(needed: int) -> Callable[[list[bytes]], bool]:
    """Predicate for consume_raw: ``needed`` distinct (customer, version) seen."""
    seen: set[tuple[str, int]] = set()
    done = 0

    def enough(values: list[bytes]) -> bool:
        nonlocal done
        for raw in values[done:]:
            update = orjson.loads(raw)
            seen.add((update["customer_id"], update["version"]))
        done = len(values)
        return len(seen) >= needed

    return enough


async def explain(dep: Deployment, problems: list[str], most: int = 3) -> list[str]:
    """The Kafka history of the first customers named in ``problems``.

    Input records, changelog values (version, orders, input offsets folded
    in, owed outputs) and updates, each with partition@offset: enough to
    tell an event never applied from a state overwritten or a value lost.
    """
    ids = list(dict.fromkeys(p.split(":", 1)[0] for p in problems if p.startswith("c-")))[:most]
    if not ids:
        return []
    changelog = f"{dep.app_id}-customers-changelog"
    topics = [dep.purchases, dep.cancellations, changelog, dep.updates]
    lines = []
    for topic, partition, offset, key, value in await key_history(
        topics, [i.encode() for i in ids], bootstrap=dep.bootstrap
    ):
        where = f"{key.decode()} {topic.rsplit('.', 1)[-1]} p{partition}@{offset}"
        if value is None:
            lines.append(f"{where} tombstone")
        elif topic == changelog:
            held = envelope.decode(value)
            state = envelope.customer_state(value)
            lines.append(
                f"{where} v{state.version} orders={state.orders} "
                f"held={sum(map(len, state.pending.values()))} owed={len(held.outbox)}"
            )
        else:
            body = orjson.loads(value)
            figures = {k: body.get(k) for k in ("version", "orders", "order_id", "occurred_at")}
            lines.append(f"{where} { ({k: v for k, v in figures.items() if v is not None}) }")
    return ["history of the first customers named:", *lines]


async def verify(
    dep: Deployment,
    stream: MixedStream,
    oracle: Oracle,
    report: Report,
    *,
    http: WorkerProcess | None = None,
    codes: Counter[str] | None = None,
) -> None:
    """Compare topics, Redis and the HTTP view with the oracle; fill ``report``."""
    expected = Counter(stream.codes if codes is None else codes)
    report.duplicates_dropped = oracle.outcomes["duplicate"]
    letters = await consume_raw(
        dep.dead_letter,
        source_letters(sum(expected.values())),
        timeout=DRAIN_TIMEOUT,
        bootstrap=dep.bootstrap,
    )
    updates = await consume_raw(
        dep.updates,
        distinct_versions(oracle.applied),
        timeout=DRAIN_TIMEOUT,
        settle=2.0,
        bootstrap=dep.bootstrap,
    )
    churn = await consume_raw(dep.churn, 0, settle=1.0, bootstrap=dep.bootstrap)
    check_dead_letters(report, [orjson.loads(v) for v in letters], expected, oracle.may_notice)
    newest = check_updates(report, updates, oracle.states, [orjson.loads(v) for v in churn])

    # The last flush follows the last outputs within the flush interval.
    def stored_ok() -> bool:
        probe = Report()
        check_stored(probe, stored_states(dep.redis_url, dep.app_id, dep.partitions), oracle.states)
        return not probe.problems

    with contextlib.suppress(AssertionError):  # counted below, with the details
        wait_until(stored_ok, 30.0, "Redis state differs from the oracle")
    check_stored(report, stored_states(dep.redis_url, dep.app_id, dep.partitions), oracle.states)
    # The group figures are kept in the same writes as the states.
    sums = await stored_sums(dep.redis_url, dep.app_id, dep.partitions)
    await check_insights(report, sums, oracle.states, newest, InsightsConfig())
    if report.problems:
        report.history = await explain(dep, report.problems)
    if http is not None:
        rng = random.Random(7)
        sample = rng.sample(sorted(c for c, s in oracle.states.items() if s.version), 10)
        for customer_id in sample:
            status, body = http.get(f"/customers/{customer_id}")

            def answered(path: str = f"/customers/{customer_id}") -> bool:
                """503 + Retry-After while a rebalance still moves the key: ask again."""
                nonlocal status, body
                status, body = http.get(path)
                return status != 503

            if status == 503:
                with contextlib.suppress(AssertionError):  # a miss, counted below
                    wait_until(answered, 20.0, f"GET /customers/{customer_id} stays 503")
            want = expected_figures(oracle.states[customer_id])
            got = orjson.loads(body) if status == 200 else {}
            if status != 200 or {k: got.get(k) for k in want} != want:
                report.mismatches += 1
                report.fail(f"GET /customers/{customer_id}: {status} {got} != {want}")


def finish(case: str, report: Report, started: float, dep: Deployment) -> None:
    ROWS.append(Row(case, report, time.monotonic() - started))
    logs = "".join(f"\n--- {w.log_path.name} ---\n{w.tail(15)}" for w in dep.workers)
    details = [*report.problems[:15], *report.history[:80]]
    assert not report.problems, "\n".join(details) + logs
    assert report.mismatches == 0


def mixed(dep: Deployment, events: int, seed: int) -> tuple[MixedStream, Oracle, Report]:
    stream = build_stream(dep.purchases, dep.cancellations, events=events, seed=seed)
    return stream, stream.oracle(), Report(events_in=len(stream.records))


# --------------------------------------------------------------------------- 1. kill -9


async def test_kill_9_at_random_moments(deployment: Callable[..., Deployment]) -> None:
    require_servers()
    started = time.monotonic()
    dep = deployment(extra_env=FAST_GROUP)
    stream, oracle, report = mixed(dep, size(12_000, 100_000), seed=901)
    rng = random.Random(9001)
    kills = size(5, 8)
    worker = dep.start_worker()
    for i, part in enumerate(slices(stream.records, kills + 1)):
        await produce(part, bootstrap=dep.bootstrap)
        if i < kills:
            # The moment: after a seeded share of this slice reached this process.
            wait_consumed(worker, rng.randint(len(part) // 10, len(part) * 9 // 10))
            worker.kill()
            worker = dep.start_worker()
    await verify(dep, stream, oracle, report, http=worker)
    finish(f"1 kill -9 x{kills}", report, started, dep)


# --------------------------------------------------------------------------- 2. Redis


def readyz(worker: WorkerProcess) -> tuple[int, dict[str, Any]]:
    try:
        status, body = worker.get("/readyz")
    except OSError:
        return 0, {}
    return status, orjson.loads(body)


async def test_redis_restart_and_outage(
    private: PrivateInfra, deployment: Callable[..., Deployment]
) -> None:
    require_servers()
    started = time.monotonic()
    private.up("redis")
    dep = deployment(redis_url=private.redis_url, extra_env=REPLAY)
    stream, oracle, report = mixed(dep, size(10_000, 60_000), seed=902)
    outage = size(6, 30)
    worker = dep.start_worker()
    first, second, third = slices(stream.records, 3)

    await produce(first, bootstrap=dep.bootstrap)
    wait_consumed(worker, len(first) // 2)
    private.down("redis")  # restart, AOF on: data kept
    private.up("redis")

    await produce(second, bootstrap=dep.bootstrap)
    wait_consumed(worker, len(first) + len(second) // 2)
    private.down("redis")
    down_at = time.monotonic()
    try:
        await produce(third, bootstrap=dep.bootstrap)  # arrives while Redis is away

        def not_ready() -> bool:
            status, body = readyz(worker)
            return status == 503 and body["checks"]["redis"] is False

        wait_until(
            not_ready,
            15.0,
            lambda: f"/readyz never said Redis is down: {readyz(worker)}\n{worker.tail()}",
        )
        body = readyz(worker)[1]
        assert body["ready"] is False and body["checks"]["redis"] is False, body
        paused_at = metric(worker, "ltv_updates_emitted_total")
        while time.monotonic() - down_at < outage:  # the outage itself: hold it, watching
            assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
            assert readyz(worker)[0] == 503
            await asyncio.sleep(0.5)
        # Paused: within the outage nothing more than one batch in flight was emitted.
        assert metric(worker, "ltv_updates_emitted_total") - paused_at <= 1000
    finally:
        # Up again even when a check failed: the cleanup removes the state from it.
        private.up("redis")
    wait_until(lambda: readyz(worker)[0] == 200, 60.0, lambda: f"not ready: {readyz(worker)}")
    await verify(dep, stream, oracle, report, http=worker)
    assert len(dep.workers) == 1 and worker.proc is not None and worker.proc.poll() is None
    finish(f"2 Redis restart + {outage}s outage", report, started, dep)


# --------------------------------------------------------------------------- 3. Kafka


async def test_kafka_broker_restart(
    private: PrivateInfra, deployment: Callable[..., Deployment]
) -> None:
    require_servers()
    started = time.monotonic()
    private.up("kafka")
    dep = deployment(bootstrap=private.bootstrap, extra_env=FAST_GROUP)
    stream, oracle, report = mixed(dep, size(10_000, 60_000), seed=903)
    worker = dep.start_worker()
    first, second = slices(stream.records, 2)
    await produce(first, bootstrap=dep.bootstrap)
    wait_consumed(worker, len(first) // 2)
    private.down("kafka")
    private.up("kafka")
    await produce(second, bootstrap=dep.bootstrap)
    await verify(dep, stream, oracle, report, http=worker)
    assert len(dep.workers) == 1 and worker.proc is not None and worker.proc.poll() is None
    finish("3 Kafka broker restart", report, started, dep)


# --------------------------------------------------------------------------- 4. rebalances


async def _rebalances(dep: Deployment, events: int, seed: int, case: str) -> None:
    started = time.monotonic()
    stream, oracle, report = mixed(dep, events, seed=seed)
    parts = slices(stream.records, 4)
    a = dep.start_worker()
    await produce(parts[0], bootstrap=dep.bootstrap)
    wait_consumed(a, len(parts[0]) // 3)
    b = dep.start_worker()  # two joins mid-stream: three workers
    c = dep.start_worker()
    await produce(parts[1], bootstrap=dep.bootstrap)
    wait_until(lambda: metric(b, "ltv_events_consumed_total") > 0, 120.0, "b idle")
    b.stop()  # a graceful leave
    await produce(parts[2], bootstrap=dep.bootstrap)
    d = dep.start_worker()
    # d may find its partitions drained already: joined is enough (then a dies).
    wait_until(lambda: metric(d, "ltv_assigned_partitions") > 0, 120.0, "d never assigned")
    a.kill()  # and one that dies
    await produce(parts[3], bootstrap=dep.bootstrap)
    await verify(dep, stream, oracle, report, http=c)
    finish(case, report, started, dep)


async def test_rebalances_three_workers(deployment: Callable[..., Deployment]) -> None:
    require_servers()
    dep = deployment(partitions=6, extra_env=FAST_GROUP)
    await _rebalances(dep, size(10_000, 60_000), 904, "4 join/leave/kill, 3 workers")


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[str]:
    from store_fixtures import free_ports, spawn_redis_cluster

    yield from spawn_redis_cluster(tmp_path, free_ports(3))


@pytest.mark.reliability_long
@pytest.mark.skipif(not LONG, reason="long only: LTV_RELIABILITY=long")
async def test_rebalances_on_redis_cluster(
    redis_cluster: str, deployment: Callable[..., Deployment]
) -> None:
    require_servers()
    dep = deployment(partitions=6, redis_url=redis_cluster, extra_env=FAST_GROUP)
    await _rebalances(dep, 60_000, 905, "4 same on Redis Cluster")


# --------------------------------------------------------------------------- 5. hostile input

MB = 1_000_000


#: Classes whose bad field exists in purchases only (a cancellation ignores it).
PURCHASE_ONLY = {2, 18, 19}


def hostile(
    rng: random.Random, purchases: str, cancellations: str, n: int
) -> tuple[KafkaRecord, str]:
    """Fuzzed payload ``n`` (class ``n % 20``) and the dead-letter code it must get.

    Oversized payloads are 1 MB one time in five (70 kB otherwise): enough
    of them to matter without moving hundreds of megabytes.
    """
    kind = n % 20
    topic = purchases if n % 3 or kind in PURCHASE_ONLY else cancellations
    big = MB if n % 100 < 20 else 70_000
    cid = f"f-{n}"
    key = cid.encode()
    body: dict[str, Any] = {
        "event_id": f"fe-{n}",
        "order_id": f"fo-{n}",
        "customer_id": cid,
        "occurred_at": "2025-03-01T00:00:00Z",
        "amount": "1.00",
        "currency": "USD",
    }

    def raw_field(name: str, text: str) -> bytes:
        """``body`` with ``name`` set to the raw JSON text ``text``."""
        doc = orjson.dumps({**body, name: 0})
        return doc.replace(f'"{name}":0'.encode(), f'"{name}":{text}'.encode())

    cases: dict[int, Callable[[], tuple[bytes, bytes | None, str]]] = {
        0: lambda: (b"\xff" + rng.randbytes(rng.randint(1, 4096)), key, "invalid_json"),
        1: lambda: (
            b"[" * (depth := rng.randint(1100, 20_000)) + b"]" * depth,
            key,
            "invalid_json",
        ),
        2: lambda: (
            orjson.dumps({**body, "items": [{"sku": _nest(rng.randint(5, 200))}]}),
            key,
            "schema",
        ),
        3: lambda: (raw_field("amount", "1e400"), key, "schema"),
        4: lambda: (raw_field("amount", "9" * rng.randint(13, 400)), key, "schema"),
        5: lambda: (
            raw_field("amount", rng.choice(["NaN", "Infinity", "-Infinity"])),
            key,
            "invalid_json",
        ),
        6: lambda: (
            orjson.dumps({**body, "amount": rng.choice(["NaN", "Infinity", "1e5", "-0.5"])}),
            key,
            "schema",
        ),
        7: lambda: (orjson.dumps({**body, "amount": f"-{rng.randint(1, 999)}.00"}), key, "schema"),
        8: lambda: (
            orjson.dumps({**body, rng.choice(["event_id", "order_id"]): rng.randint(0, 99)}),
            key,
            "schema",
        ),
        9: lambda: (
            orjson.dumps({**body, "occurred_at": rng.choice([0, 1.5, None, [], "yesterday"])}),
            key,
            "schema",
        ),
        10: lambda: (orjson.dumps(rng.choice([[body], "x", None, 42, True])), key, "schema"),
        11: lambda: (orjson.dumps({**body, "note": "x" * big}), key, "too_large"),
        12: lambda: (rng.randbytes(big) + b"\xff", key, "too_large"),
        13: lambda: (
            orjson.dumps(body).replace(b'"fe-', b'"\xc3\x28fe-'),
            key,
            "invalid_json",
        ),
        14: lambda: (
            orjson.dumps({**body, "customer_id": f"f-\x01{n}"}),
            f"f-\x01{n}".encode(),
            "schema",
        ),
        15: lambda: (orjson.dumps({**body, "event_id": f"e\n{n}\x7f"}), key, "schema"),
        16: lambda: (orjson.dumps({**body, "currency": "ZZZ"}), key, "unknown_currency"),
        17: lambda: (orjson.dumps(body), b"other\x00key", "key_mismatch"),
        18: lambda: (orjson.dumps({**body, "items": "books"}), key, "schema"),
        19: lambda: (raw_field("margin_rate", rng.choice(["1e999", "-1e999", "2"])), key, "schema"),
    }
    value, record_key, code = cases[kind]()
    return (topic, record_key, value), code


def _nest(depth: int) -> Any:
    doc: Any = "leaf"
    for _ in range(depth):
        doc = {"n": doc}
    return doc


async def test_hostile_input(deployment: Callable[..., Deployment]) -> None:
    require_servers()
    started = time.monotonic()
    dep = deployment(extra_env=REPLAY)
    rng = random.Random(905)
    stream = build_stream(
        dep.purchases, dep.cancellations, events=size(3000, 20_000), seed=905, garbage_rate=0
    )
    # Zero-value orders are real orders (docs/input-events.md): valid, applied, counted.
    for n in range(size(20, 200)):
        zero = {
            "event_id": f"z-{n}",
            "order_id": f"zo-{n}",
            "customer_id": f"z-{n % 7}",
            "occurred_at": f"2025-02-{1 + n % 28:02d}T12:00:00Z",
            "amount": rng.choice(["0", "0.00", 0, 0.0]),
            "currency": "EUR",
        }
        record = (dep.purchases, zero["customer_id"].encode(), orjson.dumps(zero))
        stream.valid.append(record)
        stream.records.insert(rng.randrange(len(stream.records)), record)
    codes: Counter[str] = Counter()
    for n in range(size(1500, 10_000)):
        record, code = hostile(rng, dep.purchases, dep.cancellations, n)
        stream.records.insert(rng.randrange(len(stream.records)), record)
        codes[code] += 1
    oracle = stream.oracle()
    report = Report(events_in=len(stream.records))
    worker = dep.start_worker()
    await produce(stream.records, bootstrap=dep.bootstrap, max_request_size=2 * MB)
    await verify(dep, stream, oracle, report, http=worker, codes=codes)
    assert len(dep.workers) == 1 and worker.proc is not None and worker.proc.poll() is None, (
        worker.tail()
    )
    finish("5 hostile input", report, started, dep)
