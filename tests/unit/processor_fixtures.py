"""A processor and input records for the pure processor tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

import orjson

from ltv.valuation import ValuationConfig
from state import envelope
from state.customer import CustomerState, StateConfig
from state.fx import load_fx_table
from streams.demo import DemoEvent
from streams.processing import Processor, Record


def processor() -> Processor:
    cfg = StateConfig(fx=load_fx_table(None, "USD"))
    return Processor(cfg, ValuationConfig(), base_currency="USD", max_bytes=65536)


def purchase(n: int, at: datetime, customer: str = "c-1") -> Record:
    """Purchase ``e-<n>`` of order ``o-<n>``, 50 USD, at source offset ``n``."""
    body = {
        "event_id": f"e-{n}",
        "order_id": f"o-{n}",
        "customer_id": customer,
        "occurred_at": at.isoformat(),
        "amount": "50.00",
        "currency": "USD",
    }
    return Record("orders.purchases", 0, n, customer.encode(), orjson.dumps(body))


def replay(events: Iterable[DemoEvent], now: datetime) -> dict[str, CustomerState]:
    """Every customer's final state after ``events`` went through ``processor()`` in
    order, with the table kept in a dict as the worker's store would."""
    proc = processor()
    table: dict[bytes, bytes] = {}
    offsets: Counter[str] = Counter()
    for event in events:
        topic = f"orders.{event.kind}s"
        key = event.key.encode()
        record = Record(topic, 0, offsets[topic], key, orjson.dumps(event.value))
        offsets[topic] += 1
        result = proc.handle(event.kind, record, table.get(key), now)
        if result.state is not None:
            table[key] = envelope.without_outbox(result.state)
    return {key.decode(): envelope.customer_state(value) for key, value in table.items()}
