"""Per-customer state and its pure transitions (DESIGN §4-§5).

A transition never mutates its input: it returns a ``Transition`` with a fresh state,
so an agent that fails half-way keeps the old state and replays the event safely.

Order independence
    For a given set of events, the final state does not depend on arrival order,
    provided that no event arrives after the customer's event-time watermark (the
    latest purchase ``occurred_at`` seen; cancellations never move it, so a
    cancellations topic consumed ahead of the purchases topic cannot make
    purchases late) has passed its ``occurred_at`` by more than
    ``pending_window`` and that the ledger cap is not hit.  It rests on:

    * every figure is a sum of per-order contributions, each a pure function of the
      order and the set of its matched cancellations; sums are exact Decimal sums;
    * refunds of an order are ``min(amount, sum of refunds)`` (a full refund counts as
      the whole amount), which is the same in any order;
    * "first" things (channel, first order, first day) are minima in event time with
      ties broken by order id, "latest" things (subscription plan) maxima;
    * a cancellation that arrives before its purchase is held and applied when the
      purchase arrives;
    * idempotency assumes retries are copies: events sharing an ``event_id``, or
      purchases sharing an ``order_id``, carry the same payload.  Purchases are
      deduplicated by order id (the ledger), cancellations by event id (``seen``).

Version counter
    ``version`` counts input events incorporated into the state: each purchase that
    created an order, and each cancellation matched to its order (when it arrives,
    or later when its purchase arrives).  Held, duplicate, late and expired events
    do not count.  The set of incorporated events is permutation-invariant, so the
    version is too.  The agent emits one ``ltv.updates`` message per entry of
    ``Transition.applied``, so the published version rises by exactly 1 per update.
    Time-driven risk changes (``set_risk(..., time_driven=True)``) also add 1; they
    depend on the clock, not on the event set.

Bounded state and the compaction guarantee
    The customer's ``horizon`` is ``watermark - ledger_window``, raised further when
    the ledger holds more than ``max_ledger_orders`` orders (to keep the newest 90 %).
    Everything older than the horizon is folded into aggregates: ledger entries,
    remembered cancellation ids, and whole purchase days before the horizon's day.  The
    totals stay exact.  What is lost is the ability to change the past: an event with
    ``occurred_at`` before the horizon is answered ``late`` and not applied (it goes
    to the dead-letter topic), because its duplicate-ness can no longer be decided;
    a refund for a compacted order finds no order, is held and expires as
    ``unknown_order``.  Within the horizon, idempotency and refunds are exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal, NamedTuple

import orjson

from state.events import Cancellation, Purchase, Scope
from state.fx import MONEY_CONTEXT, MONEY_QUANTUM, FxTable

ZERO = Decimal(0)
_ONE_MICROSECOND = timedelta(microseconds=1)

Outcome = Literal["applied", "duplicate", "held", "late", "expired", "unchanged"]


@dataclass(frozen=True, slots=True)
class StateConfig:
    """What the transitions need from the worker configuration."""

    fx: FxTable
    default_margin: Decimal = Decimal(1)
    # A cancellation whose purchase has not arrived this long after it (in the
    # customer's event time) is given up on and dead-lettered as unknown_order.
    pending_window: timedelta = timedelta(days=30)
    # Orders stay refundable and event ids deduplicable this long (event time).
    ledger_window: timedelta = timedelta(days=90)
    max_ledger_orders: int = 1000
    max_pending: int = 1000
    max_categories: int = 64

    def __post_init__(self) -> None:
        if not ZERO <= self.default_margin <= 1:
            raise ValueError("default_margin must be between 0 and 1")
        if not timedelta(0) < self.pending_window <= self.ledger_window:
            raise ValueError("need 0 < pending_window <= ledger_window")
        if self.max_ledger_orders < 10 or self.max_pending < 1 or self.max_categories < 1:
            raise ValueError("max_ledger_orders >= 10, max_pending and max_categories >= 1")


@dataclass(frozen=True, slots=True)
class OrderEntry:
    """One order in the ledger.  ``amount``/``refunded`` are in the order's currency,
    ``net``/``margin`` its current contribution in base currency."""

    occurred_at: datetime
    currency: str
    amount: Decimal
    margin_rate: Decimal
    net: Decimal
    margin: Decimal
    refunded: Decimal = ZERO
    refund_seen: bool = False

    @property
    def cancelled(self) -> bool:
        """Fully cancelled: it no longer counts as an order or a purchase day.  A
        zero-value order is cancelled by any refund-bearing cancellation."""
        return self.refund_seen and self.refunded == self.amount


@dataclass(frozen=True, slots=True)
class Held:
    """A cancellation waiting for its purchase."""

    event_id: str
    occurred_at: datetime
    amount: Decimal | None
    currency: str | None
    scope: Scope
    reason: str | None

    @classmethod
    def of(cls, c: Cancellation) -> Held:
        return cls(c.event_id, c.occurred_at, c.amount, c.currency, c.scope, c.reason)

    def event_json(self, customer_id: str, order_id: str) -> bytes:
        """The cancellation as an input event again, for the dead-letter topic when it
        expires (the original bytes are long gone by then)."""
        doc: dict[str, object] = {
            "event_id": self.event_id,
            "order_id": order_id,
            "customer_id": customer_id,
            "occurred_at": self.occurred_at.isoformat().replace("+00:00", "Z"),
            "scope": self.scope.value,
        }
        if self.amount is not None:
            doc["amount"] = str(self.amount)
        if self.currency is not None:
            doc["currency"] = self.currency
        if self.reason is not None:
            doc["reason"] = self.reason
        return orjson.dumps(doc)


class DayAgg(NamedTuple):
    """Non-cancelled orders on one UTC day and their net value in base currency."""

    orders: int
    net: Decimal
    margin: Decimal


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """The latest recurring charge (by event time, then order id)."""

    plan_id: str
    interval: str
    amount: Decimal  # base currency, per interval, gross of the latest charge
    charged_at: datetime
    order_id: str
    started_at: datetime  # first charge of any plan


@dataclass(slots=True)
class CustomerState:
    customer_id: str
    version: int = 0
    orders: int = 0
    gross: Decimal = ZERO
    net: Decimal = ZERO
    margin: Decimal = ZERO
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    watermark: datetime | None = None
    horizon: datetime | None = None
    channel: str | None = None
    channel_at: datetime | None = None
    channel_order: str | None = None
    categories: set[str] = field(default_factory=set)
    subscription: SubscriptionState | None = None
    subscription_ended_at: datetime | None = None
    risk: str | None = None
    ledger: dict[str, OrderEntry] = field(default_factory=dict)
    days: dict[int, DayAgg] = field(default_factory=dict)
    pending: dict[str, tuple[Held, ...]] = field(default_factory=dict)
    seen: dict[str, datetime] = field(default_factory=dict)
    # Aggregates of compacted history (all of it older than everything in the ledger).
    past_days: int = 0
    past_first_day_net: Decimal = ZERO
    past_first_day_margin: Decimal = ZERO
    past_first_at: datetime | None = None
    past_last_at: datetime | None = None
    # Lower bound of every timestamp held above: a compaction sweep is needed only
    # once the horizon passes it.  A cache, so not part of equality or encoding.
    floor: datetime | None = field(default=None, compare=False)

    # ------------------------------------------------------------------ read side
    @property
    def purchase_days(self) -> int:
        return self.past_days + len(self.days)

    @property
    def subscription_active(self) -> bool:
        sub, ended = self.subscription, self.subscription_ended_at
        return sub is not None and (ended is None or sub.charged_at > ended)

    @property
    def subscription_churned(self) -> bool:
        """Ended its subscription: 'churned' for the subscription formula."""
        return self.subscription is not None and not self.subscription_active

    def first_day_value(self) -> tuple[Decimal, Decimal]:
        """(net, margin) of orders on the first purchase day."""
        if self.first_order_at is None:
            return ZERO, ZERO
        agg = self.days.get(_day(self.first_order_at))
        if agg is None:
            return self.past_first_day_net, self.past_first_day_margin
        return agg.net, agg.margin

    def btyd(self, clock: datetime) -> BtydSummary | None:
        """BTYD sufficient statistics in days against ``clock`` (None: no orders)."""
        if self.first_order_at is None or self.last_order_at is None:
            return None
        first, last = _day(self.first_order_at), _day(self.last_order_at)
        first_net, first_margin = self.first_day_value()
        return BtydSummary(
            x=self.purchase_days - 1,
            t_x=last - first,
            T=max(_day(clock) - first, last - first),
            repeat_net=MONEY_CONTEXT.subtract(self.net, first_net),
            repeat_margin=MONEY_CONTEXT.subtract(self.margin, first_margin),
        )


@dataclass(frozen=True, slots=True)
class BtydSummary:
    """x = distinct purchase days - 1, t_x = last - first day, T = clock day - first day;
    repeat_* = value on purchase days after the first (Gamma-Gamma input)."""

    x: int
    t_x: int
    T: int
    repeat_net: Decimal
    repeat_margin: Decimal


@dataclass(frozen=True, slots=True)
class Applied:
    """One input event incorporated into the state (= one ltv.updates message)."""

    kind: Literal["purchase", "cancellation"]
    event_id: str
    ends_subscription: bool = False


@dataclass(frozen=True, slots=True)
class Transition:
    """Result of one call.  How the agent handles ``outcome``:

    applied    store ``state``; emit one update per ``applied`` entry.
    held       store ``state`` (the cancellation is remembered); no update.
    duplicate  nothing changed; count it, no update.
    late       nothing changed; dead-letter the event as ``late_event``.
    expired    (expire_pending) store ``state``.
    unchanged  nothing to do.
    In every case dead-letter each of ``expired`` as ``unknown_order``.
    """

    state: CustomerState
    outcome: Outcome
    applied: tuple[Applied, ...] = ()
    expired: tuple[tuple[str, Held], ...] = ()  # (order_id, held cancellation)
    changed: frozenset[str] = frozenset()


_WATCHED = (
    "orders",
    "gross",
    "net",
    "margin",
    "first_order_at",
    "last_order_at",
    "channel",
    "categories",
    "subscription",
    "subscription_ended_at",
)


def _held_key(h: Held) -> tuple[datetime, str]:
    return h.occurred_at, h.event_id


def _day(ts: datetime) -> int:
    return ts.date().toordinal()


def _day_end(day: int) -> datetime:
    """Last instant of a UTC day: a horizon after it means the day is in the past."""
    return datetime.combine(date.fromordinal(day + 1), time(), UTC) - _ONE_MICROSECOND


def _add(a: Decimal, b: Decimal) -> Decimal:
    return MONEY_CONTEXT.add(a, b)


def _sub(a: Decimal, b: Decimal) -> Decimal:
    return MONEY_CONTEXT.subtract(a, b)


def _margin_of(net: Decimal, rate: Decimal) -> Decimal:
    return MONEY_CONTEXT.multiply(net, rate).quantize(MONEY_QUANTUM, context=MONEY_CONTEXT)


def _min_time(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def _copy(s: CustomerState) -> CustomerState:
    return replace(
        s,
        categories=set(s.categories),
        ledger=dict(s.ledger),
        days=dict(s.days),
        pending=dict(s.pending),
        seen=dict(s.seen),
    )


def _changed(old: CustomerState, new: CustomerState) -> frozenset[str]:
    return frozenset(n for n in _WATCHED if getattr(old, n) != getattr(new, n))


def new_state(customer_id: str) -> CustomerState:
    return CustomerState(customer_id=customer_id)


# ------------------------------------------------------------------ transitions


def apply_purchase(state: CustomerState, p: Purchase, cfg: StateConfig) -> Transition:
    """Add an order (and any cancellations held for it)."""
    if p.customer_id != state.customer_id:
        raise ValueError(f"purchase of {p.customer_id!r} applied to {state.customer_id!r}")
    # A redelivered purchase repeats its order id, so the order id alone decides;
    # recording purchase event ids too would make the state depend on which of two
    # retries (same order, different event ids) happened to arrive first.
    if p.order_id in state.ledger:
        return Transition(state, "duplicate")
    if state.horizon is not None and p.occurred_at < state.horizon:
        return Transition(state, "late")
    s = _copy(state)
    s.floor = _min_time(s.floor, p.occurred_at)
    net = cfg.fx.convert(p.amount, p.currency)
    rate = cfg.default_margin if p.margin_rate is None else p.margin_rate
    entry = OrderEntry(p.occurred_at, p.currency, p.amount, rate, net, _margin_of(net, rate))
    s.ledger[p.order_id] = entry
    s.gross = _add(s.gross, net)
    _count_order(s, entry, +1)
    if p.channel is not None and (
        s.channel_at is None or (p.occurred_at, p.order_id) < (s.channel_at, s.channel_order or "")
    ):
        s.channel, s.channel_at, s.channel_order = p.channel, p.occurred_at, p.order_id
    _add_categories(s, (i.category for i in p.items if i.category is not None), cfg)
    if p.subscription is not None:
        _record_charge(s, p, net)
    s.version += 1
    applied = [Applied("purchase", p.event_id)]
    for held in s.pending.pop(p.order_id, ()):
        applied.append(_refund(s, p.order_id, held, cfg.fx))
    expired = _advance(s, p.occurred_at, cfg)
    return Transition(s, "applied", tuple(applied), expired, _changed(state, s))


def apply_cancellation(state: CustomerState, c: Cancellation, cfg: StateConfig) -> Transition:
    """Refund/cancel an order, or hold the cancellation until its purchase arrives."""
    if c.customer_id != state.customer_id:
        raise ValueError(f"cancellation of {c.customer_id!r} applied to {state.customer_id!r}")
    if c.event_id in state.seen:
        return Transition(state, "duplicate")
    if state.horizon is not None and c.occurred_at < state.horizon:
        return Transition(state, "late")
    s = _copy(state)
    s.seen[c.event_id] = c.occurred_at
    s.floor = _min_time(s.floor, c.occurred_at)
    held = Held.of(c)
    if c.order_id in s.ledger:
        outcome: Outcome = "applied"
        applied: tuple[Applied, ...] = (_refund(s, c.order_id, held, cfg.fx),)
    else:
        outcome, applied = "held", ()
        # Kept sorted, so the held tuple does not depend on arrival order.
        s.pending[c.order_id] = tuple(sorted((*s.pending.get(c.order_id, ()), held), key=_held_key))
    # Cancellations never move the watermark: the cancellations topic may be
    # consumed far ahead of the purchases topic (a backlog, a backfill), and a
    # watermark pulled forward by it would turn the customer's own pending
    # purchases into late events.
    expired = _advance(s, None, cfg)
    return Transition(s, outcome, applied, expired, _changed(state, s))


def expire_pending(state: CustomerState, watermark: datetime, cfg: StateConfig) -> Transition:
    """Give up on held cancellations older than ``watermark - pending_window``.

    For timers: a customer who sends nothing more would otherwise hold them forever.
    ``watermark`` is the worker's clock (event-time watermark or wall clock)."""
    limit = watermark - cfg.pending_window
    if not any(h.occurred_at < limit for hs in state.pending.values() for h in hs):
        return Transition(state, "unchanged")
    s = _copy(state)
    return Transition(s, "expired", expired=_expire(s, limit))


def set_risk(state: CustomerState, level: str, *, time_driven: bool) -> CustomerState:
    """Record the customer's current churn-risk level.  A time-driven change is an
    update of its own and takes a version; one caused by an event shares its version."""
    if level == state.risk:
        return state
    return replace(state, risk=level, version=state.version + (1 if time_driven else 0))


# ------------------------------------------------------------------ internals


def _count_order(s: CustomerState, e: OrderEntry, sign: Literal[1, -1]) -> None:
    """Add (+1) or remove (-1) a non-cancelled order's contribution."""
    op = _add if sign > 0 else _sub
    s.orders += sign
    s.net = op(s.net, e.net)
    s.margin = op(s.margin, e.margin)
    day = _day(e.occurred_at)
    agg = s.days.get(day, DayAgg(0, ZERO, ZERO))
    agg = DayAgg(agg.orders + sign, op(agg.net, e.net), op(agg.margin, e.margin))
    if agg.orders:
        s.days[day] = agg
        s.floor = _min_time(s.floor, _day_end(day))
    else:
        del s.days[day]
    if sign > 0:
        s.first_order_at = _min_time(s.first_order_at, e.occurred_at)
        if s.last_order_at is None or e.occurred_at > s.last_order_at:
            s.last_order_at = e.occurred_at
    elif e.occurred_at in (s.first_order_at, s.last_order_at):
        live = [o.occurred_at for o in s.ledger.values() if not o.cancelled]
        live += [t for t in (s.past_first_at, s.past_last_at) if t is not None]
        s.first_order_at = min(live, default=None)
        s.last_order_at = max(live, default=None)


def _refund(s: CustomerState, order_id: str, h: Held, fx: FxTable) -> Applied:
    e = s.ledger[order_id]
    if h.scope is Scope.ORDER or h.amount is not None:
        if h.amount is None:
            amount = e.amount
        else:
            amount = fx.cross(h.amount, h.currency or e.currency, e.currency)
        refunded = min(e.amount, _add(e.refunded, amount))
        net = fx.convert(_sub(e.amount, refunded), e.currency)
        new = replace(
            e, refunded=refunded, refund_seen=True, net=net, margin=_margin_of(net, e.margin_rate)
        )
        s.ledger[order_id] = new  # before _count_order, which may rescan the ledger
        if not e.cancelled:
            _count_order(s, e, -1)
            if not new.cancelled:
                _count_order(s, new, +1)
    ends = h.scope is Scope.SUBSCRIPTION
    if ends and (s.subscription_ended_at is None or h.occurred_at > s.subscription_ended_at):
        s.subscription_ended_at = h.occurred_at
    s.version += 1
    return Applied("cancellation", h.event_id, ends)


def _record_charge(s: CustomerState, p: Purchase, amount: Decimal) -> None:
    assert p.subscription is not None
    sub = s.subscription
    started = p.occurred_at if sub is None else min(sub.started_at, p.occurred_at)
    if sub is None or (p.occurred_at, p.order_id) > (sub.charged_at, sub.order_id):
        sub = SubscriptionState(
            p.subscription.plan_id,
            p.subscription.interval.value,
            amount,
            p.occurred_at,
            p.order_id,
            started,
        )
    s.subscription = replace(sub, started_at=started)


def _add_categories(s: CustomerState, new: Iterable[str], cfg: StateConfig) -> None:
    """Distinct categories; beyond the cap keep the alphabetically first ones, a choice
    that does not depend on arrival order."""
    s.categories.update(new)
    while len(s.categories) > cfg.max_categories:
        s.categories.remove(max(s.categories))


def _advance(
    s: CustomerState, at: datetime | None, cfg: StateConfig
) -> tuple[tuple[str, Held], ...]:
    """Move the watermark to purchase time ``at`` (None: a cancellation, which
    never moves it), then expire and compact what fell behind it."""
    if at is not None and (s.watermark is None or at > s.watermark):
        s.watermark = at
    expired: tuple[tuple[str, Held], ...] = ()
    if sum(len(hs) for hs in s.pending.values()) > cfg.max_pending:
        oldest = sorted(h.occurred_at for hs in s.pending.values() for h in hs)
        expired += _expire(s, oldest[-cfg.max_pending])
    if s.watermark is None:
        return expired
    if s.pending:
        expired += _expire(s, s.watermark - cfg.pending_window)
    horizon = s.watermark - cfg.ledger_window
    if len(s.ledger) > cfg.max_ledger_orders:
        times = sorted(e.occurred_at for e in s.ledger.values())
        horizon = max(horizon, times[len(times) - cfg.max_ledger_orders * 9 // 10])
    if s.horizon is None or horizon > s.horizon:
        s.horizon = horizon
        if s.floor is not None and s.floor < horizon:
            expired += _compact(s, horizon)
    return expired


def _expire(s: CustomerState, limit: datetime) -> tuple[tuple[str, Held], ...]:
    """Remove held cancellations older than ``limit``.  Their event ids stay in
    ``seen``, so a redelivery is a duplicate rather than a second dead letter."""
    out: list[tuple[str, Held]] = []
    for order_id, hs in list(s.pending.items()):
        keep = tuple(h for h in hs if h.occurred_at >= limit)
        out += [(order_id, h) for h in hs if h.occurred_at < limit]
        if keep:
            s.pending[order_id] = keep
        else:
            del s.pending[order_id]
    return tuple(sorted(out, key=lambda x: _held_key(x[1])))


def _compact(s: CustomerState, horizon: datetime) -> tuple[tuple[str, Held], ...]:
    """Fold everything older than ``horizon`` into aggregates (see module docstring)."""
    for order_id, e in list(s.ledger.items()):
        if e.occurred_at < horizon:
            del s.ledger[order_id]
            if not e.cancelled:
                s.past_first_at = _min_time(s.past_first_at, e.occurred_at)
                if s.past_last_at is None or e.occurred_at > s.past_last_at:
                    s.past_last_at = e.occurred_at
    horizon_day = _day(horizon)
    for day in sorted(d for d in s.days if d < horizon_day):
        agg = s.days.pop(day)
        if s.past_days == 0:
            s.past_first_day_net, s.past_first_day_margin = agg.net, agg.margin
        s.past_days += 1
    s.seen = {k: t for k, t in s.seen.items() if t >= horizon}
    expired = _expire(s, horizon)
    s.floor = recompute_floor(s)
    return expired


def recompute_floor(s: CustomerState) -> datetime | None:
    """The earliest timestamp the state holds (ledger, ids, held, end of first day)."""
    times = [e.occurred_at for e in s.ledger.values()]
    times += s.seen.values()
    times += [h.occurred_at for hs in s.pending.values() for h in hs]
    if s.days:
        times.append(_day_end(min(s.days)))
    return min(times, default=None)


__all__ = [
    "Applied",
    "BtydSummary",
    "CustomerState",
    "DayAgg",
    "Held",
    "OrderEntry",
    "Outcome",
    "StateConfig",
    "SubscriptionState",
    "Transition",
    "apply_cancellation",
    "apply_purchase",
    "expire_pending",
    "new_state",
    "recompute_floor",
    "set_risk",
]
