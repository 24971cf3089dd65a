"""Encoded size of CustomerState for customers with 1, 10 and 1 000 orders.

    .venv/bin/python bench/state_size.py

Orders use realistic 36-character ids, two currencies, one refund in ten, and one
category per order.  The state keeps every order (there is no time window), so
the size grows with the order count: the last row is a customer at the default
per-customer cap (``StateConfig.max_events``), which must stay well under
Kafka's 1 MB record limit.  Encode/decode times are per call, best of 5;
"event us" is one more purchase on that customer (decode, apply, encode), the
state work the worker does per event.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

from _timing import best_us

from state.codec import decode_state, encode_state
from state.customer import CustomerState, StateConfig, apply_cancellation, apply_purchase, new_state
from state.events import Cancellation, Item, Purchase, Scope
from state.fx import load_fx_table

CFG = StateConfig(fx=load_fx_table())
START = datetime(2026, 1, 1, tzinfo=UTC)


def customer(orders: int, span_days: float) -> CustomerState:
    rng = uuid.UUID(int=orders)  # deterministic ids
    state = new_state(str(rng))
    for i in range(orders):
        at = START + timedelta(days=span_days * i / max(orders - 1, 1))
        order_id = str(uuid.UUID(int=rng.int + 2 * i + 1))
        p = Purchase.model_construct(
            event_id=str(uuid.UUID(int=rng.int + 2 * i + 2)),
            order_id=order_id,
            customer_id=state.customer_id,
            occurred_at=at,
            amount=Decimal(f"{100 + i % 400}.95"),
            currency="SEK" if i % 3 else "EUR",
            margin_rate=None,
            channel="paid_search",
            items=(
                Item.model_construct(
                    sku="A1", category=f"cat-{i % 7}", quantity=1, unit_price=None
                ),
            ),
            subscription=None,
        )
        state = apply_purchase(state, p, CFG).state
        if i % 10 == 9:
            c = Cancellation.model_construct(
                event_id=f"refund-{order_id}",
                order_id=order_id,
                customer_id=state.customer_id,
                occurred_at=at + timedelta(hours=1),
                amount=None,
                currency=None,
                scope=Scope.ORDER,
                reason=None,
            )
            state = apply_cancellation(state, c, CFG).state
    return state


def main() -> None:
    header = f"{'customer':30} {'bytes':>8} {'ledger':>7} {'encode us':>10} {'decode us':>10}"
    print(f"{header} {'event us':>9}")
    for orders, span, label, calls in [
        (1, 0, "1 order", 2000),
        (10, 60, "10 orders over 2 months", 1000),
        (1000, 3 * 365, "1000 orders over 3 years", 50),
        (CFG.max_events * 10 // 11, 3 * 365, "at the cap, over 3 years", 2),
    ]:
        state = customer(orders, span)
        raw = encode_state(state)
        assert decode_state(raw) == state
        print(
            f"{label:30} {len(raw):>8} {len(state.ledger):>7} "
            f"{best_us(partial(encode_state, state), calls):>10.1f} "
            f"{best_us(partial(decode_state, raw), calls):>10.1f} "
            f"{best_us(partial(one_event, raw, state.customer_id), calls):>9.1f}"
        )


def one_event(raw: bytes, customer_id: str) -> bytes:
    """Decode, apply one new purchase, encode: the state work of one event."""
    p = Purchase.model_construct(
        event_id="e-next",
        order_id="o-next",
        customer_id=customer_id,
        occurred_at=START,
        amount=Decimal("99.95"),
        currency="SEK",
        margin_rate=None,
        channel=None,
        items=(),
        subscription=None,
    )
    return encode_state(apply_purchase(decode_state(raw), p, CFG).state)


if __name__ == "__main__":
    main()
