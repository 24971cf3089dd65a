"""Quix Streams running this project's Processor: a framework baseline for ``ltv bench throughput``.

The same ``Processor.handle`` as the worker (decode, state, valuation,
outputs), wired into a Quix ``Application`` instead of Faust: the input
topics are concatenated into one StreamingDataFrame so a customer's
purchases, cancellations and feedback share one RocksDB state store (Quix keeps a
store per dataframe, so two separate ones would not see each other's
writes), and every output goes to the app's updates topic. What differs
from the worker is what surrounds the processor: Quix's poll loop, RocksDB
and its changelog, against Faust, the Redis store with its changelog,
schedule indexes and metrics, and one output topic per kind. That is what
``worker_per_quix_processor`` compares. It values with the model the
bench stored for ``--app-id`` (``_harness.install_model``), as the workers do.

Run by bench/throughput.py in its own process, like the workers: Quix's
poll loop blocks and installs signal handlers, and the process's CPU time
is then the contender's alone. It stops once it has handled ``--events``
records and prints one JSON line on stdout: ``events_per_s``, ``seconds``
and ``cpu_share``, timed from its first handled record to its last.

    python bench/_quix.py --topics RUN --app-id ID --events N --state-dir DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from _harness import Infra, machine_busy_seconds, settings_env, settings_for
from quixstreams import Application, State, message_context
from quixstreams.models import SerializationContext, Serializer, TopicConfig
from quixstreams.state.rocksdb import RocksDBOptions

from ltv.valuation import ModelSnapshot
from state.envelope import Output
from state.model_store import ModelRecord, load_model
from state.store.config import StoreConfig
from streams.processing import EventType, Processor, Record, utc_now
from streams.wiring import build_processor

#: Key of the customer's table value in its Quix state (the state is per message key).
STATE_KEY = b"v"


def as_is(value: bytes) -> bytes:
    """State (de)serializer: the table value is bytes already (Quix's default is JSON)."""
    return value


class OutputValue(Serializer):
    """An ``Output``'s value as published; its key is set by ``to_topic``."""

    def __call__(self, value: Output, ctx: SerializationContext) -> bytes:
        return value.value


@dataclass
class Clock:
    """Wall and CPU time of the first and the latest handled record."""

    total: int
    seen: int = 0
    first_wall: float = 0.0
    first_cpu: float = 0.0
    last_wall: float = 0.0
    last_cpu: float = 0.0
    first_busy: float = 0.0

    def start(self) -> None:
        self.first_wall, self.first_cpu = time.monotonic(), time.process_time()
        self.first_busy = machine_busy_seconds()

    def tick(self) -> None:
        self.seen += 1
        self.last_wall, self.last_cpu = time.monotonic(), time.process_time()

    def figures(self) -> dict[str, float]:
        seconds = max(self.last_wall - self.first_wall, 1e-9)
        return {
            "events_per_s": self.seen / seconds,
            "seconds": seconds,
            "cpu_share": (self.last_cpu - self.first_cpu) / seconds,
            "machine_cores": (machine_busy_seconds() - self.first_busy)
            / max(time.monotonic() - self.first_wall, 1e-9),
        }


def stored_model(app_id: str, servers: Infra) -> ModelSnapshot:
    """The model in force for ``app_id``, as a worker of that app would load it."""

    async def load() -> ModelRecord | None:
        client = StoreConfig.from_url(servers.redis_url).async_client()
        try:
            return await load_model(client, app_id)
        finally:
            await client.aclose()

    record = asyncio.run(load())
    snapshot = None if record is None else record.snapshot()
    if snapshot is None:
        raise SystemExit(f"bench: no fitted model stored for {app_id}")
    return snapshot


def drain(topics: str, app_id: str, total: int, servers: Infra, state_dir: str) -> Clock:
    """Run the Quix app over the run's input topics until ``total`` records are handled."""
    settings = settings_for(settings_env(topics, app_id, servers))
    processor: Processor = build_processor(settings)
    processor.model = stored_model(app_id, servers)
    kinds: dict[str, EventType] = {
        settings.topic_purchases: "purchase",
        settings.topic_cancellations: "cancellation",
        settings.topic_feedback: "feedback",
    }
    app = Application(
        broker_address=servers.bootstrap,
        consumer_group=app_id,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        rocksdb_options=RocksDBOptions(dumps=as_is, loads=as_is),
        loglevel="WARNING",
    )
    inputs = [
        app.topic(name, key_deserializer="bytes", value_deserializer="bytes") for name in kinds
    ]
    updates = app.topic(
        settings.topic_updates,
        key_serializer="bytes",
        value_serializer=OutputValue(),
        config=TopicConfig(num_partitions=settings.partitions, replication_factor=1),
    )
    clock = Clock(total)

    def handle(
        value: bytes | None, key: bytes, timestamp: int, headers: Any, state: State[bytes, bytes]
    ) -> list[Output]:
        """One record as the worker handles it: its customer's value in, the new one stored."""
        if clock.seen == 0:
            clock.start()
        ctx = message_context()
        record = Record(ctx.topic, ctx.partition, ctx.offset, key, value or b"")
        result = processor.handle(kinds[ctx.topic], record, state.get(STATE_KEY), utc_now())
        if result.state is not None:
            state.set(STATE_KEY, result.state)
        clock.tick()
        if clock.seen >= total:
            app.stop()
        return result.outputs

    sdf, *others = (app.dataframe(topic) for topic in inputs)
    for other in others:
        sdf = sdf.concat(other)
    sdf = sdf.apply(handle, stateful=True, metadata=True, expand=True)
    sdf.to_topic(updates, key=lambda output: output.key)
    app.run()
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", required=True, help="run id naming the input topics")
    parser.add_argument("--app-id", required=True, help="consumer group and output topic prefix")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    servers = Infra(args.bootstrap, args.redis_url)
    clock = drain(args.topics, args.app_id, args.events, servers, args.state_dir)
    if clock.seen < args.events:
        raise SystemExit(f"bench: quix_processor stopped after {clock.seen} of {args.events}")
    print(json.dumps(clock.figures()), flush=True)


if __name__ == "__main__":
    main()
