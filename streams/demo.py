"""Synthetic order feed for demos, tests and benchmarks (``ltv demo``).

A small discrete-event simulation of a shop whose customers differ the way
the business questions of the service expect them to differ: by acquisition
channel, by how many categories they buy in and by how much they like the
shop (which their NPS feedback reveals). Everything derives from one seeded
RNG and a start time, so a seed reproduces the exact same stream.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from state.events import InputKind

#: Which input topic an event belongs to: one of the worker's input kinds.
EventKind = InputKind
_Profile = Literal["one_timer", "repeat", "subscriber"]


@dataclass(frozen=True)
class _Channel:
    """How the customers one acquisition channel brings in behave, and what they cost.

    ``loyalty`` are the Beta parameters of their propensity (see ``DemoFeed``);
    ``spend`` scales their baskets; ``cac`` is what the shop pays per customer
    in USD. The costs are set against the mean ``ltv_cac`` the worker reports
    once ``make run`` has sent its first 300 days: referral, email and organic
    clear 3:1 there (about 5, 4.5 and 3.5), paid search and social stay
    below (about 2.3).
    """

    name: str
    share: float
    loyalty: tuple[float, float]
    spend: float
    cac: int


_CHANNELS = (
    _Channel("organic", 0.30, (3.0, 3.0), 1.0, 150),
    _Channel("paid_search", 0.25, (2.0, 4.0), 0.9, 175),
    _Channel("social", 0.20, (2.0, 4.5), 0.85, 160),
    _Channel("email", 0.10, (4.0, 2.5), 1.0, 125),
    _Channel("referral", 0.15, (5.0, 2.0), 1.1, 150),
)
_CURRENCIES = (("SEK", 0.4, 400.0), ("EUR", 0.3, 40.0), ("USD", 0.2, 45.0), ("GBP", 0.1, 35.0))
_CATEGORIES = ("books", "games", "toys", "kitchen", "garden", "clothing", "beauty")
#: Shares of customers by how many categories they are drawn to (1, 2, 3, 4).
_BREADTH = (0.62, 0.22, 0.11, 0.05)
_PLANS = (("basic", Decimal("0.5")), ("pro", Decimal("1.0")), ("team", Decimal("2.5")))
_FEEDBACK_RATE = 0.3
_COMMENTS = {
    "detractor": ("Delivery took far too long", "Item not as described", "Support never replied"),
    "passive": ("Fine, nothing special", "Good products, slow shipping"),
    "promoter": ("Great selection, will order again", "Fast delivery and friendly support"),
}
_CENT = Decimal("0.01")


def default_cac() -> dict[str, Decimal]:
    """The demo shop's acquisition cost per channel, in USD (``LTV_CAC`` for ``make run``)."""
    return {c.name: Decimal(c.cac) for c in _CHANNELS}


def cac_setting() -> str:
    """``default_cac`` in the JSON form ``LTV_CAC`` is read in (scripts/run exports it)."""
    return json.dumps({c.name: c.cac for c in _CHANNELS})


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
    profile: _Profile
    currency: str
    typical_amount: float
    mean_gap_days: float
    channel: _Channel
    #: How much the customer likes the shop, 0..1: drives returns, churn and NPS.
    propensity: float
    categories: tuple[str, ...]
    plan: tuple[str, Decimal] | None = None
    last_order_id: str = ""


def _breadth_boost(categories: int) -> float:
    """How much faster a customer of that many categories returns, and how much
    less likely to drop out: 1 for a single category, a fifth more per further one."""
    return 1.0 + 0.2 * (categories - 1)


class DemoFeed:
    """Deterministic generator of purchases, cancellations and feedback in event-time order.

    The shop: customers join uniformly over ``span_days``; each has an
    acquisition channel, a currency, a typical basket, one to four favourite
    categories and a propensity (how much they like the shop, 0..1) drawn
    from their channel's Beta distribution: referral and email customers
    like it most, paid search and social least. The propensity decides
    whether a customer buys once, comes back (at a pace and with a chance of
    dropping out after each order that both improve with it) or holds a
    monthly plan (ended sooner when it is low), and it sets the customer's
    NPS scores, so promoters end up worth a multiple of detractors.
    Customers drawn to several categories (a minority) return more often,
    drop out less and fill bigger baskets, so breadth 3+ is worth several
    times a single category. About 30 % of orders are followed within days
    by a ``feedback`` event (score 0-10, sometimes a comment), a few orders
    are refunded in part or in full and a few events of every kind are
    re-sent with their event id. ``default_cac`` is what each channel cost.

    With ``feedback=False`` the feedback events are left out and the rest of
    the stream is the same, for consumers that know only the order topics.
    """

    def __init__(
        self,
        customers: int,
        seed: int,
        start: datetime,
        span_days: float = 365.0,
        refund_rate: float = 0.06,
        duplicate_rate: float = 0.005,
        *,
        feedback: bool = True,
    ) -> None:
        if customers < 1:
            raise ValueError("customers must be >= 1")
        if start.tzinfo is None:
            raise ValueError("start must carry a time zone")
        self._rng = random.Random(seed)
        self._start = start
        self._refund_rate = refund_rate
        self._duplicate_rate = duplicate_rate
        self._feedback = feedback
        self._seq = 0
        self._queue: list[tuple[float, int, str, _Customer, dict[str, Any] | None]] = []
        for n in range(1, customers + 1):
            customer = self._new_customer(f"c-{n:06d}")
            self._push(self._rng.uniform(0.0, span_days), "purchase", customer, None)

    def __iter__(self) -> Iterator[DemoEvent]:
        for event in self._simulate():
            if self._feedback or event.kind != "feedback":
                yield event

    def _simulate(self) -> Iterator[DemoEvent]:
        """Every event of the shop: the random draws never depend on ``feedback``."""
        while self._queue:
            day, _, action, customer, order = heapq.heappop(self._queue)
            at = self._start + timedelta(days=day)
            if action == "purchase":
                event = self._purchase(customer, at, day)
            elif action == "end_subscription":
                event = self._end_subscription(customer, at)
            elif action == "feedback":
                event = self._feedback_event(customer, at)
            else:
                assert order is not None
                event = self._cancellation(customer, order, at)
            yield event
            if self._rng.random() < self._duplicate_rate:
                yield event  # a producer retry: same event_id, must count once

    def _new_customer(self, customer_id: str) -> _Customer:
        """A customer whose traits follow from channel, propensity and breadth.

        A tenth hold a plan; the chance of buying only once falls from 0.85
        at propensity 0 to 0.15 at 1, and by 0.1 per category beyond the
        first, and everyone else comes back. Each further category also makes
        orders more frequent (``_breadth_boost``) and baskets a tenth bigger.
        """
        rng = self._rng
        channel = rng.choices(_CHANNELS, weights=[c.share for c in _CHANNELS])[0]
        propensity = rng.betavariate(*channel.loyalty)
        breadth = rng.choices(range(1, len(_BREADTH) + 1), weights=_BREADTH)[0]
        categories = tuple(rng.sample(_CATEGORIES, breadth))
        roll = rng.random()
        one_timer = 0.85 - 0.7 * propensity - 0.1 * (breadth - 1)
        profile: _Profile = (
            "subscriber" if roll < 0.1 else "one_timer" if roll < 0.1 + one_timer else "repeat"
        )
        currency, scale = self._pick_currency()
        basket = scale * channel.spend * (1.0 + 0.1 * (breadth - 1))
        customer = _Customer(
            customer_id=customer_id,
            profile=profile,
            currency=currency,
            typical_amount=basket * rng.lognormvariate(0.0, 0.5),
            mean_gap_days=rng.uniform(14.0, 90.0) * (1.5 - propensity) / _breadth_boost(breadth),
            channel=channel,
            propensity=propensity,
            categories=categories,
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
            "channel": customer.channel.name,
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
            for _ in range(rng.randint(1, min(3, len(customer.categories) + 1))):
                price = Decimal(str(customer.typical_amount * rng.uniform(0.3, 1.0))).quantize(
                    _CENT
                )
                quantity = rng.randint(1, 2)
                items.append(
                    {
                        "sku": f"SKU{rng.randint(1, 500):04d}",
                        "category": rng.choice(customer.categories),
                        "quantity": quantity,
                        "unit_price": str(price),
                    }
                )
                amount += price * quantity
            body["items"] = items
        body["amount"] = str(amount)
        if rng.random() < self._refund_rate:
            self._push(day + rng.uniform(0.5, 20.0), "cancellation", customer, body)
        if rng.random() < _FEEDBACK_RATE:
            self._push(day + rng.uniform(0.5, 10.0), "feedback", customer, None)
        self._schedule_next(customer, day)
        return DemoEvent("purchase", customer.customer_id, body)

    def _schedule_next(self, customer: _Customer, day: float) -> None:
        rng = self._rng
        if customer.profile == "one_timer":
            return
        if customer.profile == "subscriber":
            # Monthly plan churn: 16 % at propensity 0 down to 4 % at 1.
            if rng.random() < 0.16 - 0.12 * customer.propensity:
                self._push(day + rng.uniform(1.0, 29.0), "end_subscription", customer, None)
            else:
                self._push(day + 30.0, "purchase", customer, None)
            return
        # Dropping out after an order: 50 % at propensity 0 down to 5 % at 1,
        # less for customers of several categories.
        dropout = (0.5 - 0.45 * customer.propensity) / _breadth_boost(len(customer.categories))
        if rng.random() < dropout:
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

    def _feedback_event(self, customer: _Customer, at: datetime) -> DemoEvent:
        """An NPS answer: the customer's propensity on a 0-10 scale, give or take.

        Propensities above about 0.8 give mostly promoters (9-10), below 0.5
        mostly detractors (0-6); the noise lets one customer's answers vary.
        """
        rng = self._rng
        score = min(10, max(0, round(2.0 + 9.0 * customer.propensity + rng.gauss(0.0, 1.0))))
        body: dict[str, Any] = {
            "event_id": self._next_id("e"),
            "customer_id": customer.customer_id,
            "occurred_at": at.isoformat(),
            "score": score,
        }
        if rng.random() < 0.3:
            band = "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"
            body["comment"] = rng.choice(_COMMENTS[band])
        return DemoEvent("feedback", customer.customer_id, body)

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
