"""Per-customer state and its pure transitions.

A transition never mutates its input: it returns a ``Transition`` with a fresh state,
so a worker that fails half-way keeps the old state and replays the event safely.

Order independence
    For a given set of events, the final state does not depend on arrival order,
    whatever the events' ages relative to each other: no time window decides
    whether a valid event counts.  It rests on:

    * the state keeps the customer's whole history in a compact exact form: every
      order (a 64-bit hash of its id, its time, amount, refund), the 64-bit hashes
      of every cancellation event id, and the cancellations still waiting for
      their purchase, so a duplicate is recognised and a refund applied at any age;
    * every figure is a sum of per-order contributions, each a pure function of the
      order and the set of its matched cancellations; sums are exact Decimal sums;
    * refunds of an order are ``min(amount, sum of refunds)`` (a full refund counts as
      the whole amount), which is the same in any order;
    * "first" things (channel, first category, first order, first day) are minima
      in event time with ties broken by order id, "latest" things (subscription
      plan) maxima; the distinct purchase days are a multiset of days of orders
      not fully cancelled, so a late order that becomes the first, or the
      cancellation of the only order of the first day, moves the first day exactly;
    * a cancellation that arrives before its purchase is held and applied when the
      purchase arrives, however late; ``notify_unmatched`` only marks it as
      reported (the dead letter is a notice), it never drops it;
    * the NPS score kept is the latest feedback by event time, ties broken by
      event id (a maximum, like the subscription plan); every feedback event id
      is remembered in ``seen`` (hashed apart from cancellation ids, so the
      two inputs may reuse each other's ids), older ones included;
    * idempotency assumes retries are copies: events sharing an ``event_id``, or
      purchases sharing an ``order_id``, carry the same payload.  Purchases are
      deduplicated by order id (the ledger), cancellations and feedback by event
      id (``seen``).

    Ids are kept as 64-bit BLAKE2b hashes: two distinct ids of one customer
    collide with probability ~n^2 / 2^65 (about 1e-11 at the 20 000-event cap).

Version counter
    ``version`` counts input events incorporated into the state: each purchase that
    created an order, and each cancellation matched to its order (when it arrives,
    or later when its purchase arrives), and each new feedback event, also one
    older than the score kept (docs/output-events.md: versions depend on the
    set of events only).  Held, duplicate and refused events do not count.
    The set of incorporated events is permutation-invariant, so the version is
    too.  The worker emits one ``ltv.updates`` message per entry of
    ``Transition.applied``, so the published version rises by exactly 1 per update.
    Time-driven risk changes (``set_risk(..., time_driven=True)``) also add 1; they
    depend on the clock, not on the event set.

The per-customer cap
    ``max_events`` bounds what one customer remembers (orders plus cancellation
    and feedback ids), and with it the state's size: about 20 bytes an order
    encoded, so the default 20 000 keeps a value well under Kafka's 1 MB record
    limit.  A new event past the cap is refused (outcome ``limit``,
    dead-lettered as ``customer_limit``); duplicates of what is remembered are
    still recognised.
    Below the cap every figure is exact in any order; past it, which events were
    refused depends on arrival order, and the dead letters say which.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, NamedTuple, cast

import orjson

from ltv.acquisition import FirstOrder
from ltv.insights import nps_class as class_of_score
from state.events import Cancellation, Feedback, InputEvent, InputKind, NpsClass, Purchase, Scope
from state.fx import MONEY_CONTEXT, MONEY_QUANTUM, FxTable

ZERO = Decimal(0)

Outcome = Literal["applied", "duplicate", "held", "limit", "notified", "unchanged"]


@dataclass(frozen=True, slots=True)
class StateConfig:
    """What the transitions need from the worker configuration."""

    fx: FxTable
    default_margin: Decimal = Decimal(1)
    # A held cancellation is reported unknown_order once the purchases input it
    # waits on has moved this far past it in event time (notify_unmatched).
    pending_window: timedelta = timedelta(days=30)
    # Orders plus cancellation and feedback ids one customer may remember (module doc).
    max_events: int = 20_000
    max_categories: int = 64

    def __post_init__(self) -> None:
        if not ZERO <= self.default_margin <= 1:
            raise ValueError("default_margin must be between 0 and 1")
        if self.pending_window < timedelta(0):
            raise ValueError("pending_window must not be negative")
        if self.max_events < 1 or self.max_categories < 1:
            raise ValueError("max_events and max_categories must be >= 1")


def id_hash(text: str, person: bytes = b"") -> int:
    """The 64-bit key an order id or cancellation event id is remembered by.

    ``person`` (BLAKE2b personalisation) keeps the hashes of another input's
    ids apart: a feedback event may carry a cancellation's event id.
    """
    digest = hashlib.blake2b(text.encode(), digest_size=8, person=person).digest()
    return int.from_bytes(digest, "big")


#: The personalisation of feedback event id hashes (see ``id_hash``).
FEEDBACK_PERSON = b"ltv-feedback"


def feedback_key(event_id: str) -> int:
    """The key in ``CustomerState.seen`` a feedback event is remembered by."""
    return id_hash(event_id, FEEDBACK_PERSON)


class OrderEntry(NamedTuple):
    """One order in the ledger.  ``amount``/``refunded`` are in the order's currency,
    ``net``/``margin`` its current contribution in base currency.  A tuple: a long
    history decodes into thousands of these."""

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
    """A cancellation waiting for its purchase.  ``notified``: already reported
    as unknown_order (it is applied all the same if the purchase comes)."""

    event_id: str
    occurred_at: datetime
    amount: Decimal | None
    currency: str | None
    scope: Scope
    reason: str | None
    notified: bool = False

    @classmethod
    def of(cls, c: Cancellation) -> Held:
        return cls(c.event_id, c.occurred_at, c.amount, c.currency, c.scope, c.reason)

    def event_json(self, customer_id: str, order_id: str) -> bytes:
        """The cancellation as an input event again, for the dead-letter notice
        (the original bytes are long gone by then)."""
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


@dataclass(frozen=True, slots=True)
class Score:
    """The customer's latest NPS score (by event time, then event id)."""

    occurred_at: datetime
    event_id: str
    score: int

    def nps_class(self) -> NpsClass:
        """Promoters answer 9-10, passives 7-8, detractors 0-6 (``ltv.insights.nps_class``)."""
        return cast(NpsClass, class_of_score(self.score))


@dataclass(slots=True)
class CustomerState:
    """One customer.  ``ledger``, ``seen``, ``pending`` and the figures above them
    are the source of truth; ``orders``, ``net``, ``margin``, ``days`` and the
    first/last order times are their running aggregates (``recount`` rebuilds them)."""

    customer_id: str
    version: int = 0
    orders: int = 0
    gross: Decimal = ZERO
    net: Decimal = ZERO
    margin: Decimal = ZERO
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    channel: str | None = None
    channel_at: datetime | None = None
    channel_order: str | None = None
    # The smallest category of the earliest order carrying one, and that order's
    # key: a time-invariant covariate for the models.  Like the channel, it is a
    # fact of the order, so a cancellation of that order leaves it.
    first_category: str | None = None
    first_category_at: datetime | None = None
    first_category_order: str | None = None
    categories: set[str] = field(default_factory=set)
    subscription: SubscriptionState | None = None
    subscription_ended_at: datetime | None = None
    risk: str | None = None
    score: Score | None = None
    ledger: dict[int, OrderEntry] = field(default_factory=dict)
    days: dict[int, DayAgg] = field(default_factory=dict)
    pending: dict[str, tuple[Held, ...]] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)

    # ------------------------------------------------------------------ read side
    @property
    def purchase_days(self) -> int:
        return len(self.days)

    @property
    def remembered(self) -> int:
        """What counts against ``StateConfig.max_events``."""
        return len(self.ledger) + len(self.seen)

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
        agg = self.days[_day(self.first_order_at)]
        return agg.net, agg.margin

    def first_order(self) -> FirstOrder:
        """The covariates of the orders model (``ltv.acquisition``): the channel,
        the first purchase day's net value in base currency, the first
        category and whether the first order started the subscription."""
        sub = self.subscription
        return FirstOrder(
            channel=self.channel,
            value=float(self.first_day_value()[0]),
            category=self.first_category,
            subscription=sub is not None and sub.started_at == self.first_order_at,
        )

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

    @property
    def nps_class(self) -> NpsClass:
        """The class of the latest NPS answer (docs/input-events.md)."""
        return "unknown" if self.score is None else self.score.nps_class()

    def unnotified_since(self) -> datetime | None:
        """The oldest held cancellation not yet reported (None: none)."""
        times = [h.occurred_at for hs in self.pending.values() for h in hs if not h.notified]
        return min(times, default=None)


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

    kind: InputKind
    event_id: str
    ends_subscription: bool = False


@dataclass(frozen=True, slots=True)
class Transition:
    """Result of one call.  How the worker handles ``outcome``:

    applied    store ``state``; emit one update per ``applied`` entry.
    held       store ``state`` (the cancellation is remembered); no update.
    notified   (notify_unmatched) store ``state``; no update.
    duplicate  nothing changed; count it, no update.
    limit      nothing changed; dead-letter the event as ``customer_limit``.
    unchanged  nothing to do.
    ``notices`` are held cancellations to report as ``unknown_order`` now.
    """

    state: CustomerState
    outcome: Outcome
    applied: tuple[Applied, ...] = ()
    notices: tuple[tuple[str, Held], ...] = ()  # (order_id, held cancellation)
    changed: frozenset[str] = frozenset()


_WATCHED = (
    "orders",
    "gross",
    "net",
    "margin",
    "first_order_at",
    "last_order_at",
    "channel",
    "first_category",
    "categories",
    "subscription",
    "subscription_ended_at",
    "score",
)


def _held_key(h: Held) -> tuple[datetime, str]:
    return h.occurred_at, h.event_id


def _day(ts: datetime) -> int:
    return ts.toordinal()


def _add(a: Decimal, b: Decimal) -> Decimal:
    return MONEY_CONTEXT.add(a, b)


def _sub(a: Decimal, b: Decimal) -> Decimal:
    return MONEY_CONTEXT.subtract(a, b)


def margin_of(net: Decimal, rate: Decimal) -> Decimal:
    """An order's margin: a pure function of its net value and margin rate."""
    return MONEY_CONTEXT.multiply(net, rate).quantize(MONEY_QUANTUM, context=MONEY_CONTEXT)


def _min_time(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def _precedes(p: Purchase, at: datetime | None, order_id: str | None) -> bool:
    """Whether ``p`` comes before the order a "first" field was taken from
    (``at``, ``order_id``; None: no order yet).

    Event time, ties broken by order id: the field ends up the minimum over
    all orders that carry it, whatever order they arrive in.
    """
    return at is None or order_id is None or (p.occurred_at, p.order_id) < (at, order_id)


def _copy(s: CustomerState) -> CustomerState:
    return replace(
        s,
        categories=set(s.categories),
        ledger=dict(s.ledger),
        days=dict(s.days),
        pending=dict(s.pending),
        seen=set(s.seen),
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
    key = id_hash(p.order_id)
    if key in state.ledger:
        return Transition(state, "duplicate")
    if state.remembered >= cfg.max_events:
        return Transition(state, "limit")
    s = _copy(state)
    net = cfg.fx.convert(p.amount, p.currency)
    rate = cfg.default_margin if p.margin_rate is None else p.margin_rate
    entry = OrderEntry(p.occurred_at, p.currency, p.amount, rate, net, margin_of(net, rate))
    s.ledger[key] = entry
    s.gross = _add(s.gross, net)
    _count_order(s, entry, +1)
    if p.channel is not None and _precedes(p, s.channel_at, s.channel_order):
        s.channel, s.channel_at, s.channel_order = p.channel, p.occurred_at, p.order_id
    categories = {i.category for i in p.items if i.category is not None}
    # Categories without a first category: a value stored before the first
    # category was kept, which no longer knows the orders that carried them.
    # It stays unknown rather than be taken from a later order.
    unknown = s.first_category is None and bool(s.categories)
    # The smallest of the order's categories: where an item sits in the order means nothing.
    if categories and not unknown and _precedes(p, s.first_category_at, s.first_category_order):
        s.first_category = min(categories)
        s.first_category_at, s.first_category_order = p.occurred_at, p.order_id
    _add_categories(s, categories, cfg)
    if p.subscription is not None:
        _record_charge(s, p, net)
    s.version += 1
    applied = [Applied("purchase", p.event_id)]
    for held in s.pending.pop(p.order_id, ()):
        applied.append(_refund(s, key, held, cfg.fx))
    return Transition(s, "applied", tuple(applied), changed=_changed(state, s))


def _admitted(
    state: CustomerState, what: str, customer_id: str, event_key: int, cfg: StateConfig
) -> CustomerState | Transition:
    """A copy of ``state`` that remembers ``event_key``, or the transition refusing it.

    The events remembered by id (cancellations, NPS answers) are taken in
    the same way: a redelivery is a duplicate, and the per-customer cap
    refuses an event before it is remembered.
    """
    if customer_id != state.customer_id:
        raise ValueError(f"{what} of {customer_id!r} applied to {state.customer_id!r}")
    if event_key in state.seen:
        return Transition(state, "duplicate")
    if state.remembered >= cfg.max_events:
        return Transition(state, "limit")
    s = _copy(state)
    s.seen.add(event_key)
    return s


def apply_cancellation(state: CustomerState, c: Cancellation, cfg: StateConfig) -> Transition:
    """Refund/cancel an order, or hold the cancellation until its purchase arrives."""
    s = _admitted(state, "cancellation", c.customer_id, id_hash(c.event_id), cfg)
    if isinstance(s, Transition):
        return s
    held = Held.of(c)
    order_key = id_hash(c.order_id)
    if order_key in s.ledger:
        applied = (_refund(s, order_key, held, cfg.fx),)
        return Transition(s, "applied", applied, changed=_changed(state, s))
    # Kept sorted, so the held tuple does not depend on arrival order.
    s.pending[c.order_id] = tuple(sorted((*s.pending.get(c.order_id, ()), held), key=_held_key))
    return Transition(s, "held")


def apply_feedback(state: CustomerState, f: Feedback, cfg: StateConfig) -> Transition:
    """Take an NPS answer into the state: remembered, and kept if it is the latest.

    An answer older than the kept score still counts as an update of its own
    (a version), so the version depends on the set of answers, not on which
    came first.
    """
    s = _admitted(state, "feedback", f.customer_id, feedback_key(f.event_id), cfg)
    if isinstance(s, Transition):
        return s
    kept = s.score
    if kept is None or (f.occurred_at, f.event_id) > (kept.occurred_at, kept.event_id):
        s.score = Score(f.occurred_at, f.event_id, f.score)
    s.version += 1
    applied = (Applied("feedback", f.event_id),)
    return Transition(s, "applied", applied, changed=_changed(state, s))


def apply_event(state: CustomerState, event: InputEvent, cfg: StateConfig) -> Transition:
    """The transition of any input event."""
    if isinstance(event, Purchase):
        return apply_purchase(state, event, cfg)
    if isinstance(event, Cancellation):
        return apply_cancellation(state, event, cfg)
    return apply_feedback(state, event, cfg)


def notify_unmatched(
    state: CustomerState, progress: datetime | None, cfg: StateConfig
) -> Transition:
    """Report held cancellations the purchases input has moved past.

    ``progress`` is the event-time progress of the purchases partition that
    carries this customer's purchases (the newest ``occurred_at`` read from it;
    None: unknown yet).  A held cancellation older than ``progress -
    pending_window`` is marked notified and returned in ``notices``, once; it
    stays held, so a purchase that still comes gets its refund.  Nothing else
    (the cancellations topic, other customers, the wall clock) can make it due.
    """
    due_at = notice_due(state, cfg)
    if progress is None or due_at is None or due_at >= progress:
        return Transition(state, "unchanged")
    limit = progress - cfg.pending_window
    s = _copy(state)
    notices: list[tuple[str, Held]] = []
    for order_id, hs in s.pending.items():
        due = [h for h in hs if not h.notified and h.occurred_at < limit]
        if due:
            notices += [(order_id, h) for h in due]
            s.pending[order_id] = tuple(replace(h, notified=True) if h in due else h for h in hs)
    notices.sort(key=lambda n: _held_key(n[1]))
    return Transition(s, "notified", notices=tuple(notices))


def notice_due(state: CustomerState, cfg: StateConfig) -> datetime | None:
    """The purchases progress past which ``notify_unmatched`` reports something."""
    since = state.unnotified_since()
    return None if since is None else since + cfg.pending_window


def set_risk(state: CustomerState, level: str, *, time_driven: bool) -> CustomerState:
    """Record the customer's current churn-risk level.  A time-driven change is an
    update of its own and takes a version; one caused by an event shares its version."""
    if level == state.risk:
        return state
    return replace(state, risk=level, version=state.version + (1 if time_driven else 0))


def recount(s: CustomerState) -> None:
    """Rebuild the running aggregates from the ledger (after decoding).

    The same additions as ``_count_order`` applying the orders one by one
    (``MONEY_CONTEXT``, exact), in one pass: decoding a history is this loop.
    The first and last order times are the extremes of the live orders.
    """
    days: dict[int, DayAgg] = {}
    orders, net, margin = 0, ZERO, ZERO
    first: datetime | None = None
    last: datetime | None = None
    for e in s.ledger.values():
        if e.cancelled:
            continue
        at = e.occurred_at
        day = _day(at)
        agg = days.get(day)
        if agg is None:
            days[day] = DayAgg(1, _add(ZERO, e.net), _add(ZERO, e.margin))
        else:
            days[day] = DayAgg(agg.orders + 1, _add(agg.net, e.net), _add(agg.margin, e.margin))
        orders += 1
        net, margin = _add(net, e.net), _add(margin, e.margin)
        if first is None or at < first:
            first = at
        if last is None or at > last:
            last = at
    s.days, s.orders, s.net, s.margin = days, orders, net, margin
    s.first_order_at, s.last_order_at = first, last


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
    else:
        del s.days[day]
    if sign > 0:
        s.first_order_at = _min_time(s.first_order_at, e.occurred_at)
        if s.last_order_at is None or e.occurred_at > s.last_order_at:
            s.last_order_at = e.occurred_at
    elif e.occurred_at in (s.first_order_at, s.last_order_at):
        live = [o.occurred_at for o in s.ledger.values() if not o.cancelled]
        s.first_order_at = min(live, default=None)
        s.last_order_at = max(live, default=None)


def _refund(s: CustomerState, key: int, h: Held, fx: FxTable) -> Applied:
    e = s.ledger[key]
    if h.scope is Scope.ORDER or h.amount is not None:
        if h.amount is None:
            amount = e.amount
        else:
            amount = fx.cross(h.amount, h.currency or e.currency, e.currency)
        refunded = min(e.amount, _add(e.refunded, amount))
        net = fx.convert(_sub(e.amount, refunded), e.currency)
        new = e._replace(
            refunded=refunded, refund_seen=True, net=net, margin=margin_of(net, e.margin_rate)
        )
        s.ledger[key] = new  # before _count_order, which may rescan the ledger
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


__all__ = [
    "Applied",
    "BtydSummary",
    "CustomerState",
    "DayAgg",
    "Held",
    "OrderEntry",
    "Outcome",
    "Score",
    "StateConfig",
    "SubscriptionState",
    "Transition",
    "apply_cancellation",
    "apply_event",
    "apply_feedback",
    "apply_purchase",
    "feedback_key",
    "id_hash",
    "margin_of",
    "new_state",
    "notice_due",
    "notify_unmatched",
    "recount",
    "set_risk",
]
