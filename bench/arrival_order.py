"""Exactness under arrival order and age, measured on a real worker (four cases).

1. 100 valid purchases of 20 customers over 9 months, published shuffled:
   how many were applied, how many dead-lettered.
2. One customer, a year of history (12 orders, a full and two partial
   refunds, three re-sent events), published shuffled: final orders and net
   revenue against the arithmetic of the history.
3. 1 500 demo customers, a year of orders and refunds published shuffled,
   the worker killed with SIGKILL twice while it drains: customers whose
   stored state differs from the pure transitions applied in date order.
4. The UCI Online Retail export (``online_retail``: 18 536 invoices, 4 519
   return events) backfilled in date order with ``ltv backfill`` as contract
   JSONL: customers whose net revenue differs from the export's own
   arithmetic, and the dead letters by code (only returns of orders that
   never exist may be reported, as unknown_order).

    ltv bench arrival_order [--retail PATH] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import online_retail
import orjson
from _harness import (
    ROOT,
    Infra,
    Worker,
    add_common_args,
    cleanup,
    feed,
    infra,
    report,
    run_id,
    settings_env,
    settings_for,
    wait_until,
)
from aiokafka import AIOKafkaConsumer

from state.customer import CustomerState, StateConfig, apply_event, new_state
from state.envelope import customer_state
from state.events import decode_event
from state.fx import load_fx_table
from state.store.config import StoreConfig
from state.store.keys import KeyLayout
from streams.demo import DemoEvent
from streams.publisher import publish

#: No inactivity ticks (the reference models input events only), USD base.
QUIET = {"LTV_INACTIVITY_INTERVAL": "86400"}
#: A killed worker leaves the group after 6 s (the broker's minimum), not 60 s.
FAST_GROUP = {**QUIET, "BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "1"}


class Run:
    """One worker deployment on fresh topics and a fresh app id."""

    def __init__(self, servers: Infra, extra: dict[str, str]) -> None:
        self.servers = servers
        self.app_id = run_id()
        self.env = {**settings_env(self.app_id, self.app_id, servers), **extra}
        self.settings = settings_for(self.env)
        self.workers: list[Worker] = []

    def start(self) -> Worker:
        worker = Worker(f"{self.app_id}-{len(self.workers)}", self.env)
        worker.start()
        self.workers.append(worker)
        return worker

    def publish(self, events: Iterable[DemoEvent]) -> int:
        return asyncio.run(publish(events, self.settings))

    def states(self) -> dict[str, CustomerState]:
        client = StoreConfig.from_url(self.servers.redis_url).sync_client()
        layout = KeyLayout(self.app_id, "customers")
        out = {}
        for partition in range(self.settings.partitions):
            for key, raw in client.hscan_iter(layout.data_key(partition), count=1000):
                out[key.decode()] = customer_state(raw)
        client.close()
        return out

    def dead_letters(self) -> list[dict[str, Any]]:
        return asyncio.run(_read_all(self.settings.topic_dead_letter, self.servers))

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        cleanup((self.app_id,), self.servers)


async def _read_all(topic: str, servers: Infra) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        topic, **servers.kafka(), auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=3000)
        return [orjson.loads(r.value) for rs in batches.values() for r in rs if r.value]
    finally:
        await consumer.stop()


def _settled(run: Run, done: Any, timeout: float) -> dict[str, CustomerState]:
    """Wait until ``done(states)`` holds, or until the states stop changing."""
    last: dict[str, CustomerState] = {}
    stable_since = time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = run.states()
        if done(states):
            return states
        if states != last:
            last, stable_since = states, time.monotonic()
        elif time.monotonic() - stable_since > 60:
            return states  # nothing moved for a minute: what the worker ended with
        time.sleep(1.0)
    return last


def _codes(letters: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(d["error"]["code"] for d in letters))


def _purchase(customer: str, order: str, at: datetime, amount: str) -> DemoEvent:
    body = {
        "event_id": f"e-{order}",
        "order_id": order,
        "customer_id": customer,
        "occurred_at": at.isoformat(),
        "amount": amount,
        "currency": "USD",
    }
    return DemoEvent("purchase", customer, body)


def _refund(customer: str, n: int, order: str, at: datetime, amount: str | None) -> DemoEvent:
    body: dict[str, Any] = {
        "event_id": f"r-{n}",
        "order_id": order,
        "customer_id": customer,
        "occurred_at": at.isoformat(),
        "scope": "order",
    }
    if amount is not None:
        body["amount"] = amount
    return DemoEvent("cancellation", customer, body)


START = datetime(2024, 1, 3, 10, tzinfo=UTC)


def case_unsorted_purchases(servers: Infra, timeout: float) -> dict[str, Any]:
    rng = random.Random(1)
    events = [
        _purchase(f"c-{i % 20}", f"o-{i}", START + timedelta(days=rng.uniform(0, 270)), "25.00")
        for i in range(100)
    ]
    rng.shuffle(events)
    run = Run(servers, QUIET)
    try:
        run.publish(events)
        run.start()
        states = _settled(run, lambda s: sum(x.orders for x in s.values()) == 100, timeout)
        return {
            "applied": sum(s.orders for s in states.values()),
            "dead_letters": _codes(run.dead_letters()),
        }
    finally:
        run.stop()


def case_one_customer_year(servers: Infra, timeout: float) -> dict[str, Any]:
    orders = [
        (f"y-{i}", START + timedelta(days=30 * i), Decimal(20) + Decimal("7.25") * i)
        for i in range(12)
    ]
    events = [_purchase("c-year", o, at, str(a)) for o, at, a in orders]
    refunds = {3: None, 5: Decimal("10.00"), 9: Decimal("15.50")}  # None: the whole order
    events += [
        _refund(
            "c-year",
            i,
            orders[i][0],
            orders[i][1] + timedelta(days=20),
            None if a is None else str(a),
        )
        for i, a in refunds.items()
    ]
    events += [events[0], events[7], events[-1]]  # re-sent
    random.Random(2).shuffle(events)
    kept = [a for i, (_, _, a) in enumerate(orders) if refunds.get(i, 0) is not None]
    want_net = sum(kept, Decimal(0)) - sum((a for a in refunds.values() if a), Decimal(0))
    run = Run(servers, QUIET)
    try:
        run.publish(events)
        run.start()
        states = _settled(run, lambda s: "c-year" in s and s["c-year"].version == 15, timeout)
        state = states.get("c-year")
        return {
            "orders": None if state is None else state.orders,
            "net": None if state is None else str(state.net.quantize(Decimal("0.01"))),
            "want_orders": len(kept),
            "want_net": str(want_net),
        }
    finally:
        run.stop()


def _reference(events: list[DemoEvent]) -> dict[str, CustomerState]:
    """The pure transitions over the events in date order: what live processing keeps."""
    fx = load_fx_table(None, "USD")
    cfg = StateConfig(fx=fx)
    states: dict[str, CustomerState] = {}
    decoded = [decode_event(e.kind, orjson.dumps(e.value), fx=fx) for e in events]
    for e in sorted(decoded, key=lambda e: (e.occurred_at, e.event_id)):
        state = states.get(e.customer_id) or new_state(e.customer_id)
        states[e.customer_id] = apply_event(state, e, cfg).state
    return states


def case_kill_9(servers: Infra, timeout: float) -> dict[str, Any]:
    events = list(feed(1500, seed=3))
    random.Random(3).shuffle(events)
    want = _reference(events)
    run = Run(servers, FAST_GROUP)
    try:
        run.publish(events)
        for share in (0.3, 0.6):  # of the events, counted by the worker since its start
            worker = run.start()
            target = share * len(events)
            wait_until(lambda w=worker, n=target: w.processed() >= n, timeout, "progress")
            worker.kill()
        run.start()

        def wrong(states: dict[str, CustomerState]) -> list[str]:
            return [
                c for c, s in want.items() if c not in states or replace(states[c], risk=None) != s
            ]

        states = _settled(run, lambda s: not wrong(s), timeout)
        letters = run.dead_letters()
        return {
            "events": len(events),
            "customers": len(want),
            "customers_wrong": len(wrong(states)),
            "dead_letters": _codes(letters),
        }
    finally:
        run.stop()


def case_online_retail(servers: Infra, timeout: float, path: Path) -> dict[str, Any]:
    export = online_retail.load(path)
    run = Run(servers, {"LTV_BASE_CURRENCY": "GBP", "LTV_INACTIVITY_INTERVAL": "5"})
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / "online-retail.jsonl"
        online_retail.write_jsonl(export, jsonl)
        try:
            run.start()
            env = {k: v for k, v in os.environ.items() if not k.startswith("LTV_")}
            command = [sys.executable, "-m", "streams.cli", "backfill", str(jsonl)]
            subprocess.run(command, env={**env, **run.env}, cwd=ROOT, check=True)

            def wrong(states: dict[str, CustomerState]) -> list[str]:
                return [
                    c
                    for c, net in export.expected_net.items()
                    if c not in states or states[c].net != net
                ]

            states = _settled(run, lambda s: not wrong(s), timeout)
            time.sleep(15)  # three inactivity ticks: notices of what the input has passed
            letters = run.dead_letters()
            noticed = {orjson.loads(d["value"])["event_id"] for d in letters if d["offset"] < 0}
            return {
                "purchases": export.purchases,
                "return_events": export.returns,
                "returns_of_orders_that_never_exist": len(export.unmatched),
                "customers": len(export.expected_net),
                "customers_net_wrong": len(wrong(states)),
                "dead_letters": _codes(letters),
                "notices_of_matched_returns": len(noticed - export.unmatched),
            }
        finally:
            run.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser)
    parser.add_argument("--retail", type=Path, default=online_retail.DEFAULT_PATH)
    args = parser.parse_args()
    servers = infra(args)
    figures: dict[str, Any] = {
        "unsorted_100_purchases": case_unsorted_purchases(servers, args.timeout),
        "one_customer_year_shuffled": case_one_customer_year(servers, args.timeout),
        "kill_9_twice_shuffled_year": case_kill_9(servers, args.timeout),
        "online_retail_backfill": case_online_retail(servers, args.timeout, args.retail),
    }
    report("arrival order and age", figures, args.json)


if __name__ == "__main__":
    main()
