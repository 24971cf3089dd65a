"""Encoded size of CustomerState for customers with 1, 10 and 1 000 orders.

    .venv/bin/python bench/state_size.py

Orders use realistic 36-character ids, two currencies, one refund in ten, and one
category per order.  "Recent" puts every order inside the ledger window (the worst
case: the whole ledger is kept); "over N days" spreads them so that compaction folds
the old ones into aggregates.  Encode/decode times are per call, best of 5.
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
    print(f"{'customer':34} {'bytes':>8} {'ledger':>7} {'encode us':>10} {'decode us':>10}")
    for orders, span, label in [
        (1, 0, "1 order"),
        (10, 60, "10 orders, recent"),
        (1000, 80, "1000 orders, recent"),
        (1000, 3 * 365, "1000 orders over 3 years"),
    ]:
        state = customer(orders, span)
        raw = encode_state(state)
        assert decode_state(raw) == state
        print(
            f"{label:34} {len(raw):>8} {len(state.ledger):>7} "
            f"{best_us(partial(encode_state, state), 200):>10.1f} "
            f"{best_us(partial(decode_state, raw), 200):>10.1f}"
        )


if __name__ == "__main__":
    main()
