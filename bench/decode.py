"""Decode + validate cost of one typical purchase (2 items), in microseconds per event.

    .venv/bin/python bench/decode.py [--n 50000]

Also times the cancellation decoder and the state transition, the other per-event
pure work the worker does per event.  Best of 5 runs, to report the machine rather than noise.
"""

from __future__ import annotations

import argparse

import orjson
from _timing import best_us

from state.customer import StateConfig, apply_purchase, new_state
from state.events import decode_cancellation, decode_purchase
from state.fx import load_fx_table

PURCHASE = orjson.dumps(
    {
        "event_id": "e-1",
        "order_id": "o-1001",
        "customer_id": "c-42",
        "occurred_at": "2026-11-20T10:15:00+01:00",
        "amount": "499.00",
        "currency": "SEK",
        "margin_rate": 0.42,
        "channel": "paid_search",
        "items": [
            {"sku": "A1", "category": "books", "quantity": 1, "unit_price": "399.00"},
            {"sku": "B7", "category": "toys", "quantity": 2, "unit_price": "50.00"},
        ],
    }
)
CANCELLATION = orjson.dumps(
    {
        "event_id": "e-2",
        "order_id": "o-1001",
        "customer_id": "c-42",
        "occurred_at": "2026-11-21T09:00:00Z",
        "amount": "100.00",
        "scope": "order",
        "reason": "returned",
    }
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000)
    n = parser.parse_args().n
    fx = load_fx_table()
    cfg = StateConfig(fx=fx)
    purchase = decode_purchase(PURCHASE, fx=fx)
    empty = new_state("c-42")
    print(
        f"purchase ({len(PURCHASE)} B, 2 items) decode+validate: "
        f"{best_us(lambda: decode_purchase(PURCHASE, fx=fx), n):.1f} us/event"
    )
    print(
        f"cancellation ({len(CANCELLATION)} B) decode+validate:   "
        f"{best_us(lambda: decode_cancellation(CANCELLATION, fx=fx), n):.1f} us/event"
    )
    print(
        f"apply_purchase to a new customer:                 "
        f"{best_us(lambda: apply_purchase(empty, purchase, cfg), n):.1f} us/event"
    )


if __name__ == "__main__":
    main()
