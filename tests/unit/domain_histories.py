"""Random event histories for the domain-core property tests, and an oracle.

The oracle recomputes a customer's figures straight from the list of events, with
no state, no holding and no incremental updates, so that it shares nothing with
``state.customer`` except the FX rounding rule (which is the definition of money).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from state.customer import CustomerState, StateConfig, Transition, apply_event, new_state
from state.events import Cancellation, Feedback, Interval, Item, Purchase, Scope, Subscription
from state.fx import MONEY_QUANTUM, load_fx_table

FX = load_fx_table(base="SEK")
CFG = StateConfig(fx=FX, default_margin=Decimal("0.5"))
CUSTOMER = "c-1"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
CURRENCIES = ("SEK", "EUR", "USD", "JPY")

Event = Purchase | Cancellation | Feedback

money = st.decimals(min_value=0, max_value=2000, places=2)
#: Histories span three years: no window of any kind may decide what counts.
SPAN_DAYS = 3 * 365
# Mostly any day, often a few shared ones, so that orders share purchase days
# (the first day among them) and refunds land before or after their orders.
_day = st.integers(0, SPAN_DAYS) | st.sampled_from((0, 1, 2, 400, SPAN_DAYS))
#: Minutes since T0.
moments = st.builds(lambda day, minute: day * 1440 + minute, _day, st.integers(0, 1439))
# Strategies are built once here: building them inside composites per example
# costs more than the tests themselves.


PurchaseFields = tuple[int, Decimal, str, Decimal | None, str | None, list[str], str | None]
CancelFields = tuple[int, Decimal | None, str | None, Scope]


def purchase_fields(when: st.SearchStrategy[int]) -> st.SearchStrategy[PurchaseFields]:
    """minute offset, amount, currency, margin rate, channel, categories, plan."""
    return st.tuples(
        when,
        money,
        st.sampled_from(CURRENCIES),
        st.none() | st.decimals(min_value=0, max_value=1, places=2),
        st.none() | st.sampled_from(("seo", "paid", "email")),
        st.lists(st.sampled_from(("books", "toys", "food")), max_size=2),
        st.none() | st.sampled_from(("basic", "pro")),
    )


# Purchases, too, often share a moment, so that ties of the "first" things
# (channel, first category) are broken by order id.
_purchase_fields = purchase_fields(moments | st.sampled_from((0, 1440)))
_cancel_fields = st.tuples(
    moments,
    st.none() | money,
    st.none() | st.sampled_from(CURRENCIES),
    st.sampled_from(Scope),
)
# Feedback often shares a moment, so that ties on occurred_at are broken by event id.
_feedback_fields = st.tuples(
    moments | st.sampled_from((0, 1440)), st.integers(0, 10), st.integers(0, 10**6)
)
FeedbackFields = tuple[int, int, int]


def make_purchase(index: int, fields: PurchaseFields, start: datetime = T0) -> Purchase:
    minute, amount, currency, margin_rate, channel, categories, plan = fields
    return Purchase.model_construct(
        event_id=f"p-{index}",
        order_id=f"o-{index}",
        customer_id=CUSTOMER,
        occurred_at=start + timedelta(minutes=minute),
        amount=amount,
        currency=currency,
        margin_rate=margin_rate,
        channel=channel,
        items=tuple(
            Item.model_construct(sku="s", category=c, quantity=1, unit_price=None)
            for c in categories
        ),
        subscription=None
        if plan is None
        else Subscription.model_construct(plan_id=plan, interval=Interval.MONTH),
    )


def make_cancellation(
    index: int, order_id: str, fields: CancelFields, start: datetime = T0
) -> Cancellation:
    minute, amount, currency, scope = fields
    return Cancellation.model_construct(
        event_id=f"c-{index}",
        order_id=order_id,
        customer_id=CUSTOMER,
        occurred_at=start + timedelta(minutes=minute),
        amount=amount,
        currency=currency,
        scope=scope,
        reason=None,
    )


def make_feedback(fields: FeedbackFields, start: datetime = T0) -> Feedback:
    """NPS answer ``score`` whose event id is ``f-<id>``, or ``c-<id>`` (odd ids):
    a feedback event may reuse a cancellation's event id."""
    minute, score, n = fields
    return Feedback.model_construct(
        event_id=f"{'c' if n % 2 else 'f'}-{n % 40}",
        customer_id=CUSTOMER,
        occurred_at=start + timedelta(minutes=minute),
        score=score,
        comment=None,
    )


def _history_parts(max_orders: int) -> st.SearchStrategy[Any]:
    return st.tuples(
        st.lists(_purchase_fields, max_size=min(max_orders, 40)),
        st.lists(st.tuples(st.integers(0, 10**6), _cancel_fields), max_size=20),
        st.lists(st.integers(0, 10**6), max_size=12),
        st.lists(st.integers(0, 10**6), max_size=6),
        st.lists(_feedback_fields, max_size=8),
    )


_SHARED_DAYS = (0, 1, 2, 400, SPAN_DAYS)


def _bulk(rng: random.Random, n: int) -> tuple[list[PurchaseFields], list[Any]]:
    """``n`` orders and about n / 3 cancellations drawn from the same domains as
    the strategies above: hypothesis rarely builds long lists element by element."""

    def moment() -> int:
        day = rng.choice(_SHARED_DAYS) if rng.random() < 0.2 else rng.randint(0, SPAN_DAYS)
        return day * 1440 + rng.randint(0, 1439)

    def amount() -> Decimal:
        return Decimal(rng.randint(0, 200_000)) / 100

    orders: list[PurchaseFields] = [
        (
            moment(),
            amount(),
            rng.choice(CURRENCIES),
            None if rng.random() < 0.5 else Decimal(rng.randint(0, 100)) / 100,
            rng.choice((None, "seo", "paid", "email")),
            rng.sample(("books", "toys", "food"), rng.randint(0, 2)),
            rng.choice((None, None, "basic", "pro")),
        )
        for _ in range(n)
    ]
    cancels = [
        (
            rng.randint(0, 10**6),
            (
                moment(),
                None if rng.random() < 0.5 else amount(),
                rng.choice((None, *CURRENCIES)),
                rng.choice(list(Scope)),
            ),
        )
        for _ in range(n // 3)
    ]
    return orders, cancels


@st.composite
def histories(draw: st.DrawFn, max_orders: int = 500) -> list[Event]:
    """Up to ``max_orders`` orders over three years (one history in five has
    100 or more); cancellations (partial, full, of orders that never arrive,
    dated before or after their order); exact redeliveries of any earlier event
    and purchase retries with a fresh event id, at any distance from the
    original; NPS answers, some at the same moment, some reusing the event id
    of a cancellation."""
    orders, cancels, redeliveries, retries, answers = draw(_history_parts(max_orders))
    rng = draw(st.randoms(use_true_random=True))
    if max_orders >= 100 and rng.random() >= 0.8:
        more_orders, more_cancels = _bulk(rng, rng.randint(100, max_orders))
        orders, cancels = orders + more_orders, cancels + more_cancels
    events: list[Event] = [make_purchase(i, f) for i, f in enumerate(orders)]
    for j, (target, fields) in enumerate(cancels):
        # Target len(orders) is an order that never arrives.
        events.append(make_cancellation(j, f"o-{target % (len(orders) + 1)}", fields))
    # Answers sharing an event id are redeliveries: retries are copies.
    events += list({f.event_id: f for f in map(make_feedback, answers)}.values())
    if events:
        events += [events[k % len(events)] for k in redeliveries]
    if orders:
        for k in retries:
            original = events[k % len(orders)]
            events.append(original.model_copy(update={"event_id": f"retry-{k}-{len(events)}"}))
    return events


def apply(state: CustomerState, event: Event, cfg: StateConfig = CFG) -> Transition:
    return apply_event(state, event, cfg)


def replay(events: Iterable[Event], cfg: StateConfig = CFG) -> CustomerState:
    state = new_state(CUSTOMER)
    for event in events:
        state = apply(state, event, cfg).state
    return state


@dataclass(frozen=True)
class Expected:
    version: int
    orders: int
    gross: Decimal
    net: Decimal
    margin: Decimal
    purchase_days: int
    first_order_at: datetime | None
    last_order_at: datetime | None
    first_day_net: Decimal
    channel: str | None
    first_category: str | None
    categories: frozenset[str]
    plan: str | None
    subscription_ended_at: datetime | None
    held: frozenset[str]
    #: The latest NPS answer: (occurred_at, event_id, score).
    score: tuple[datetime, str, int] | None


def _q(x: Decimal) -> Decimal:
    return x.quantize(MONEY_QUANTUM)


def oracle(events: Sequence[Event], default_margin: Decimal = CFG.default_margin) -> Expected:
    # Each input deduplicates its own event ids: a feedback event may reuse a
    # cancellation's.
    distinct = list({(type(e), e.event_id): e for e in events}.values())
    orders: dict[str, Purchase] = {}
    for e in sorted((e for e in distinct if isinstance(e, Purchase)), key=lambda e: e.event_id):
        orders.setdefault(e.order_id, e)
    cancels = [e for e in distinct if isinstance(e, Cancellation)]
    matched = [c for c in cancels if c.order_id in orders]

    nets: dict[str, Decimal] = {}
    margin = Decimal(0)
    live: list[Purchase] = []
    for oid, p in orders.items():
        refunds = [c for c in matched if c.order_id == oid]
        bearing = [c for c in refunds if c.scope is Scope.ORDER or c.amount is not None]
        total = Decimal(0)
        for c in bearing:
            if c.amount is None:
                total += p.amount
            elif c.currency in (None, p.currency):
                total += c.amount
            else:
                rate = FX.rates[c.currency] / FX.rates[p.currency]
                total += _q(c.amount * rate)
        refunded = min(total, p.amount)
        nets[oid] = _q((p.amount - refunded) * FX.rates[p.currency])
        margin += _q(nets[oid] * (default_margin if p.margin_rate is None else p.margin_rate))
        if not (bearing and refunded == p.amount):
            live.append(p)

    days = {p.occurred_at.date() for p in live}
    first = min((p.occurred_at for p in live), default=None)
    with_channel = [p for p in orders.values() if p.channel]
    with_category = [p for p in orders.values() if any(i.category for i in p.items)]
    charges = [p for p in orders.values() if p.subscription]
    ends = [c.occurred_at for c in matched if c.scope is Scope.SUBSCRIPTION]
    answers = [(f.occurred_at, f.event_id, f.score) for f in distinct if isinstance(f, Feedback)]
    return Expected(
        version=len(orders) + len(matched) + len(answers),
        orders=len(live),
        gross=sum((_q(p.amount * FX.rates[p.currency]) for p in orders.values()), Decimal(0)),
        net=sum(nets.values(), Decimal(0)),
        margin=margin,
        purchase_days=len(days),
        first_order_at=first,
        last_order_at=max((p.occurred_at for p in live), default=None),
        first_day_net=sum(
            (nets[p.order_id] for p in live if first and p.occurred_at.date() == first.date()),
            Decimal(0),
        ),
        channel=min(with_channel, key=lambda p: (p.occurred_at, p.order_id)).channel
        if with_channel
        else None,
        first_category=min(
            i.category
            for i in min(with_category, key=lambda p: (p.occurred_at, p.order_id)).items
            if i.category
        )
        if with_category
        else None,
        categories=frozenset(i.category for p in orders.values() for i in p.items if i.category),
        plan=max(charges, key=lambda p: (p.occurred_at, p.order_id)).subscription.plan_id  # type: ignore[union-attr]
        if charges
        else None,
        subscription_ended_at=max(ends, default=None),
        held=frozenset(c.event_id for c in cancels if c.order_id not in orders),
        score=max(answers, default=None),
    )


def observed(state: CustomerState) -> Expected:
    """The same figures read from a state, for comparison with ``oracle``."""
    return Expected(
        version=state.version,
        orders=state.orders,
        gross=state.gross,
        net=state.net,
        margin=state.margin,
        purchase_days=state.purchase_days,
        first_order_at=state.first_order_at,
        last_order_at=state.last_order_at,
        first_day_net=state.first_day_value()[0],
        channel=state.channel,
        first_category=state.first_category,
        categories=frozenset(state.categories),
        plan=None if state.subscription is None else state.subscription.plan_id,
        subscription_ended_at=state.subscription_ended_at,
        held=frozenset(h.event_id for hs in state.pending.values() for h in hs),
        score=None
        if state.score is None
        else (state.score.occurred_at, state.score.event_id, state.score.score),
    )
