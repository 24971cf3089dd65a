"""A processor and input records for the pure processor tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

import orjson

from ltv.insights import InsightsConfig
from ltv.valuation import ValuationConfig
from state import envelope
from state.customer import CustomerState, StateConfig
from state.fx import load_fx_table
from streams.demo import DemoEvent
from streams.processing import Processor, Record

#: The default input topic of each kind of demo event.
TOPICS = {
    "purchase": "orders.purchases",
    "cancellation": "orders.cancellations",
    "feedback": "customers.feedback",
}


def processor(insights: InsightsConfig | None = None) -> Processor:
    """The processor of the pure tests; ``insights``: keep the group aggregates."""
    cfg = StateConfig(fx=load_fx_table(None, "USD"))
    return Processor(
        cfg, ValuationConfig(), base_currency="USD", max_bytes=65536, insights_cfg=insights
    )


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


def feedback(
    event_id: str, at: datetime, score: int, customer: str = "c-1", key: str | None = None
) -> Record:
    """NPS answer ``event_id`` of ``customer`` (keyed by ``key``, default the customer)."""
    body = {
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": at.isoformat(),
        "score": score,
        "comment": "fine",
    }
    key_bytes = (customer if key is None else key).encode()
    return Record("customers.feedback", 0, 0, key_bytes, orjson.dumps(body))


def replay(events: Iterable[DemoEvent], now: datetime) -> dict[str, CustomerState]:
    """Every customer's final state after ``events`` went through ``processor()`` in
    order, with the table kept in a dict as the worker's store would."""
    proc = processor()
    table: dict[bytes, bytes] = {}
    offsets: Counter[str] = Counter()
    for event in events:
        topic = TOPICS[event.kind]
        key = event.key.encode()
        record = Record(topic, 0, offsets[topic], key, orjson.dumps(event.value))
        offsets[topic] += 1
        result = proc.handle(event.kind, record, table.get(key), now)
        if result.state is not None:
            table[key] = envelope.without_outbox(result.state)
    return {key.decode(): envelope.customer_state(value) for key, value in table.items()}
