"""Synthetic order feed for demos, tests and benchmarks (``ltv demo``).

A small discrete-event simulation of a shop: customers join over a year,
some buy once, some come back at their own pace until they drop out, some
hold a monthly subscription; a few orders are refunded in part or in full
and a few events are re-sent. Everything derives from one seeded RNG and a
start time, so a seed reproduces the exact same stream.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

EventKind = Literal["purchase", "cancellation", "feedback"]

_CURRENCIES = (("SEK", 0.4, 400.0), ("EUR", 0.3, 40.0), ("USD", 0.2, 45.0), ("GBP", 0.1, 35.0))
_CHANNELS = ("organic", "paid_search", "social", "email", "referral")
_CATEGORIES = ("books", "games", "toys", "kitchen", "garden", "clothing", "beauty")
_PLANS = (("basic", Decimal("0.5")), ("pro", Decimal("1.0")), ("team", Decimal("2.5")))
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class DemoEvent:
    """One input event: which topic it belongs to, its Kafka key and JSON body."""

    kind: EventKind
    key: str
    value: dict[str, Any]

    @property
    def occurred_at(self) -> datetime:
        """The event's time (every input event carries ``occurred_at`` with an offset)."""
        return datetime.fromisoformat(self.value["occurred_at"])


@dataclass
class _Customer:
    customer_id: str
    profile: Literal["one_timer", "repeat", "subscriber"]
    currency: str
    typical_amount: float
    mean_gap_days: float
    channel: str
    plan: tuple[str, Decimal] | None = None
    last_order_id: str = ""


class DemoFeed:
    """Deterministic generator of purchases and cancellations in event-time order."""

    def __init__(
        self,
        customers: int,
        seed: int,
        start: datetime,
        span_days: float = 365.0,
        refund_rate: float = 0.06,
        duplicate_rate: float = 0.005,
    ) -> None:
        if customers < 1:
            raise ValueError("customers must be >= 1")
        if start.tzinfo is None:
            raise ValueError("start must carry a time zone")
        self._rng = random.Random(seed)
        self._start = start
        self._refund_rate = refund_rate
        self._duplicate_rate = duplicate_rate
        self._seq = 0
        self._queue: list[tuple[float, int, str, _Customer, dict[str, Any] | None]] = []
        for n in range(1, customers + 1):
            customer = self._new_customer(f"c-{n:06d}")
            self._push(self._rng.uniform(0.0, span_days), "purchase", customer, None)

    def __iter__(self) -> Iterator[DemoEvent]:
        while self._queue:
            day, _, action, customer, order = heapq.heappop(self._queue)
            at = self._start + timedelta(days=day)
            if action == "purchase":
                event = self._purchase(customer, at, day)
            elif action == "end_subscription":
                event = self._end_subscription(customer, at)
            else:
                assert order is not None
                event = self._cancellation(customer, order, at)
            yield event
            if self._rng.random() < self._duplicate_rate:
                yield event  # a producer retry: same event_id, must count once

    def _new_customer(self, customer_id: str) -> _Customer:
        rng = self._rng
        roll = rng.random()
        profile: Literal["one_timer", "repeat", "subscriber"] = (
            "one_timer" if roll < 0.5 else "repeat" if roll < 0.9 else "subscriber"
        )
        currency, scale = self._pick_currency()
        customer = _Customer(
            customer_id=customer_id,
            profile=profile,
            currency=currency,
            typical_amount=scale * rng.lognormvariate(0.0, 0.5),
            mean_gap_days=rng.uniform(14.0, 90.0),
            channel=rng.choice(_CHANNELS),
        )
        if profile == "subscriber":
            customer.plan = rng.choice(_PLANS)
        return customer

    def _pick_currency(self) -> tuple[str, float]:
        roll = self._rng.random()
        for code, share, scale in _CURRENCIES:
            if roll < share:
                return code, scale
            roll -= share
        return _CURRENCIES[-1][0], _CURRENCIES[-1][2]

    def _push(
        self, day: float, action: str, customer: _Customer, order: dict[str, Any] | None
    ) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (day, self._seq, action, customer, order))

    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-{self._seq:09d}"

    def _purchase(self, customer: _Customer, at: datetime, day: float) -> DemoEvent:
        rng = self._rng
        customer.last_order_id = self._next_id("o")
        body: dict[str, Any] = {
            "event_id": self._next_id("e"),
            "order_id": customer.last_order_id,
            "customer_id": customer.customer_id,
            "occurred_at": at.isoformat(),
            "currency": customer.currency,
            "margin_rate": round(rng.uniform(0.2, 0.6), 2),
            "channel": customer.channel,
        }
        if customer.plan is not None:
            plan_id, factor = customer.plan
            price = (Decimal(str(customer.typical_amount)) * factor).quantize(_CENT)
            body["items"] = [
                {
                    "sku": plan_id,
                    "category": "subscription",
                    "quantity": 1,
                    "unit_price": str(price),
                }
            ]
            body["subscription"] = {"plan_id": plan_id, "interval": "month"}
            amount = price
        else:
            items = []
            amount = Decimal(0)
            for _ in range(rng.randint(1, 3)):
                price = Decimal(str(customer.typical_amount * rng.uniform(0.3, 1.0))).quantize(
                    _CENT
                )
                quantity = rng.randint(1, 2)
                items.append(
                    {
                        "sku": f"SKU{rng.randint(1, 500):04d}",
                        "category": rng.choice(_CATEGORIES),
                        "quantity": quantity,
                        "unit_price": str(price),
                    }
                )
                amount += price * quantity
            body["items"] = items
        body["amount"] = str(amount)
        if rng.random() < self._refund_rate:
            self._push(day + rng.uniform(0.5, 20.0), "cancellation", customer, body)
        self._schedule_next(customer, day)
        return DemoEvent("purchase", customer.customer_id, body)

    def _schedule_next(self, customer: _Customer, day: float) -> None:
        rng = self._rng
        if customer.profile == "one_timer":
            return
        if customer.profile == "subscriber":
            if rng.random() < 0.1:
                self._push(day + rng.uniform(1.0, 29.0), "end_subscription", customer, None)
            else:
                self._push(day + 30.0, "purchase", customer, None)
            return
        if rng.random() < 0.15:  # dropped out: no further orders
            return
        self._push(day + rng.expovariate(1.0 / customer.mean_gap_days), "purchase", customer, None)

    def _cancellation(self, customer: _Customer, order: dict[str, Any], at: datetime) -> DemoEvent:
        rng = self._rng
        body: dict[str, Any] = {
            "event_id": self._next_id("e"),
            "order_id": order["order_id"],
            "customer_id": customer.customer_id,
            "occurred_at": at.isoformat(),
        }
        if rng.random() < 0.5:
            share = Decimal(str(rng.uniform(0.1, 0.5)))
            body["amount"] = str((Decimal(order["amount"]) * share).quantize(_CENT))
            body["reason"] = "partial_refund"
        else:
            body["reason"] = "returned"
        body["scope"] = "order"
        return DemoEvent("cancellation", customer.customer_id, body)

    def _end_subscription(self, customer: _Customer, at: datetime) -> DemoEvent:
        # Ending a plan refunds nothing: the last charge stays paid (amount 0).
        body = {
            "event_id": self._next_id("e"),
            "order_id": customer.last_order_id,
            "customer_id": customer.customer_id,
            "occurred_at": at.isoformat(),
            "amount": "0",
            "scope": "subscription",
            "reason": "plan_cancelled",
        }
        return DemoEvent("cancellation", customer.customer_id, body)


def default_start(now: datetime | None = None, span_days: float = 365.0) -> datetime:
    """Midnight UTC ``span_days`` before ``now``: histories end around today."""
    now = now or datetime.now(UTC)
    day = (now - timedelta(days=span_days)).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
