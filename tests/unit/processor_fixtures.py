"""A processor and input records for the pure processor tests."""

from __future__ import annotations

from datetime import datetime

import orjson

from ltv.valuation import ValuationConfig
from state.customer import StateConfig
from state.fx import load_fx_table
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
