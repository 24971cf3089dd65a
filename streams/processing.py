"""What happens to one input record, as a pure function (no Kafka, no Redis).

``Processor.handle`` takes the raw record and the customer's stored state and
returns the new state plus every output record to publish. The unit of work
(``streams.unit_of_work``) only moves bytes between Kafka, the table and this
function, so the whole event path is unit-testable and the runtime stays a
thin edge.

Time-driven work. Every result that writes a state also says when the
customer next needs a look without any event (``Result.next_check``: the next
churn-risk change from ``ltv.schedule``, on the clock); the unit of work
files it in the store's schedule in the same atomic write as the state. When that time
comes the inactivity timer (``streams.inactivity``) sends an internal record,
and ``handle("inactivity", ...)`` revalues the customer as of the clock: a new
level is published as ``ltv.updates`` (cause inactivity, one version more)
plus ``ltv.churn-risk`` (cause inactivity); an unchanged level (the customer
bought meanwhile, or the record is a retry) publishes nothing and only
reschedules, so repeated ticks are harmless.

Held cancellations. A cancellation whose purchase has not come is held in
the state for good. It is reported as ``unknown_order`` once the purchases
partition that carries the customer's purchases has moved past it by
``pending_window`` in event time (``Processor.progress``: the newest
``occurred_at`` of an unbroken run of that partition's offsets read by this
process, ``streams.progress``), never by the clock: the cancellations topic
draining ahead, other partitions or the wall clock say nothing about whether
the purchase can still come. The result's ``notice_at`` files the customer
in the store's ``notices`` index, scored by that progress, and the
inactivity timer asks it for the customers the partition's progress has
passed. Every write of the customer checks too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from ltv.formulas import ValueBasis
from ltv.insights import InsightsConfig
from ltv.schedule import risk_outlook
from ltv.valuation import (
    CustomerFigures,
    ModelSnapshot,
    Valuation,
    ValuationConfig,
    completed_periods,
    value,
)
from state import envelope
from state.codec import decode_state, encode_state
from state.customer import (
    Applied,
    CustomerState,
    StateConfig,
    Transition,
    apply_event,
    new_state,
    notice_due,
    notify_unmatched,
    set_risk,
)
from state.envelope import Output
from state.events import (
    CHURN_ENCODER,
    UPDATE_ENCODER,
    DeadLetter,
    ErrorCode,
    EventError,
    InputKind,
    check_key,
    decode_event,
)
from state.insights import Contribution, Valued
from streams.progress import PartitionProgress

log = logging.getLogger(__name__)

#: The ``cause`` of an update (``state.events.Cause``): its type and event id.
CauseFields = dict[str, str | None]

#: "inactivity": the internal record of the inactivity timer (streams.inactivity).
EventType = InputKind | Literal["inactivity"]


@dataclass(frozen=True, slots=True)
class NextCheck:
    """When the customer next needs a time-driven look (None: never, unschedule)."""

    at: datetime | None


@dataclass(slots=True)
class Result:
    """Outcome of one input record.

    ``state`` is the new table value (``state.envelope``: the encoded state,
    the input offsets it includes and ``outputs`` as its outbox), or None
    when there is nothing to remember.
    ``outcome`` is the metric label: applied, held, duplicate, dead_letter, ...
    ``next_check`` is the customer's new schedule entry, or None to leave it.
    ``notice_at`` is its entry in the held-cancellation index (scored by the
    purchases partition's event-time progress), or None to leave it.
    ``customer`` is the new state decoded, and ``valuation`` the valuation of
    the update published with it (None: none published, so the state keeps
    counting in the aggregates as it was last valued).
    """

    outcome: str
    state: bytes | None = None
    outputs: list[Output] = field(default_factory=list)
    dead_letter_codes: list[str] = field(default_factory=list)
    occurred_at: datetime | None = None
    total_ltv: Decimal | None = None
    churn: tuple[str | None, str] | None = None
    next_check: NextCheck | None = None
    notice_at: NextCheck | None = None
    customer: CustomerState | None = None
    valuation: Valuation | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """The parts of a Kafka record the processor needs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class Processor:
    """Decode, apply, value and render one input record at a time."""

    def __init__(
        self,
        state_cfg: StateConfig,
        valuation_cfg: ValuationConfig,
        *,
        base_currency: str,
        max_bytes: int,
        cancellations_topic: str = "orders.cancellations",
        event_clock: bool = False,
        insights_cfg: InsightsConfig | None = None,
    ) -> None:
        self.state_cfg = state_cfg
        #: What the group aggregates read (None: the deployment keeps none).
        self.insights_cfg = insights_cfg
        self.valuation_cfg = valuation_cfg
        self.base_currency = base_currency
        self.max_bytes = max_bytes
        self.cancellations_topic = cancellations_topic
        self.event_clock = event_clock
        self.model: ModelSnapshot | None = None
        # Highest event time seen: the clock of replays (LTV_CLOCK=event).
        self.watermark: datetime | None = None
        #: Per purchases partition, how far that input has moved in event time
        #: (what held cancellations wait on; ``streams.progress``).
        self.progress: dict[int, PartitionProgress] = {}

    def purchases_started(self, partition: int, offset: int) -> None:
        """Consumption of purchases ``partition`` (re)starts at ``offset``."""
        self.progress.setdefault(partition, PartitionProgress()).start(offset)

    def purchases_progress(self, partition: int) -> datetime | None:
        """How far purchases ``partition`` has moved in event time (None: unknown)."""
        progress = self.progress.get(partition)
        return None if progress is None else progress.at

    def clock(self, now: datetime) -> datetime:
        """Valuation time: the wall clock, or the event-time watermark for replays."""
        if self.event_clock and self.watermark is not None:
            return self.watermark
        return now

    def handle(
        self, kind: EventType, record: Record, stored: bytes | None, now: datetime
    ) -> Result:
        """Process one record; never raises for bad input (it becomes a dead letter).

        ``stored`` is the key's table value. The customer's history in the
        state, not the record's offset, tells a redelivery from a new event,
        whatever its age: Kafka may redeliver from far back.
        """
        try:
            state = None if stored is None else envelope.state_of(stored)
            result = self._handle(kind, record, state, now)
        except EventError as exc:
            result = self._dead(record, exc, now)
        except Exception as exc:  # our own bug: keep the event, keep the worker
            log.exception(
                "internal error on %s[%d]@%d", record.topic, record.partition, record.offset
            )
            result = self._dead(record, EventError(ErrorCode.INTERNAL, repr(exc)[:500]), now)
        if kind == "purchase":  # every record fills its offset, valid or not
            progress = self.progress.setdefault(record.partition, PartitionProgress())
            progress.read(record.offset, result.occurred_at)
        if result.state is not None:
            # Records that change nothing (duplicates, dead letters) write
            # nothing: a redelivery derives their outputs again.
            result.state = self._table_value(result, result.state, stored)
        return result

    def _table_value(self, result: Result, state: bytes, stored: bytes | None) -> bytes:
        """The table value of a write: the state, what it adds to the group
        aggregates, and the outputs it owes (``state.envelope``).

        The aggregates count a customer as of the last published valuation,
        so a write that publishes none carries the stored valuation part on.
        """
        cfg = self.insights_cfg
        if cfg is None:
            return envelope.encode(state, result.outputs)
        customer = result.customer
        assert customer is not None, "a result that writes a state carries it decoded"
        valued: Valued | None
        if result.valuation is not None:
            valued = Valued.of(result.valuation)
        else:
            kept = None if stored is None else envelope.valued_of(stored)
            valued = None if kept is None else Valued.decode(kept)
        contribution = Contribution.of(customer, valued, cfg, customer.nps_class)
        return envelope.encode(
            state,
            result.outputs,
            valued=None if valued is None else valued.encode(),
            contribution=contribution.encode(),
        )

    def _handle(
        self, kind: EventType, record: Record, stored: bytes | None, now: datetime
    ) -> Result:
        if kind == "inactivity":
            return self._inactivity(record, stored, now)
        event = decode_event(kind, record.value, fx=self.state_cfg.fx, max_bytes=self.max_bytes)
        customer_id, occurred_at = event.customer_id, event.occurred_at
        check_key(record.key, customer_id)
        state = decode_state(stored) if stored is not None else new_state(customer_id)
        transition = apply_event(state, event, self.state_cfg)
        if self.watermark is None or occurred_at > self.watermark:
            self.watermark = occurred_at
        if transition.outcome == "limit":
            log.warning(
                "%s[%d]@%d: customer %r remembers %d events, the most allowed "
                "(LTV_MAX_CUSTOMER_EVENTS); event dead-lettered",
                record.topic,
                record.partition,
                record.offset,
                customer_id,
                state.remembered,
            )
            error = EventError(
                ErrorCode.CUSTOMER_LIMIT,
                f"customer remembers {state.remembered} events, the most allowed "
                f"(LTV_MAX_CUSTOMER_EVENTS={self.state_cfg.max_events}); not applied",
            )
            return self._dead(record, error, now)
        if transition.outcome in ("applied", "held"):
            notice = notify_unmatched(
                transition.state, self.purchases_progress(record.partition), self.state_cfg
            )
            if notice.outcome == "notified":
                transition = replace(transition, state=notice.state, notices=notice.notices)
        result = self._render(transition, state.version, self.clock(now))
        result.occurred_at = occurred_at
        result.outputs.extend(self._notices(transition, record.partition, now))
        result.dead_letter_codes.extend(ErrorCode.UNKNOWN_ORDER.value for _ in transition.notices)
        if result.state is not None and (state.pending or transition.state.pending):
            result.notice_at = NextCheck(notice_due(transition.state, self.state_cfg))
        return result

    def _render(self, t: Transition, old_version: int, clock: datetime) -> Result:
        """Store and publish according to the transition's outcome (see Transition)."""
        state = t.state
        if t.outcome in ("duplicate", "unchanged"):
            return Result(outcome=t.outcome)
        if t.outcome != "applied" or not t.applied:
            return Result(
                outcome=t.outcome,
                state=encode_state(state),
                next_check=self._next_check(state, clock),
                customer=state,
            )
        figures = self.figures(state, clock)
        valuation = value(figures, self.model, self.valuation_cfg, clock)
        level = valuation.churn_risk.value if valuation.churn_risk is not None else None
        previous = state.risk
        churn: tuple[str | None, str] | None = None
        if level is not None and level != previous:
            state = set_risk(state, level, time_driven=False)
            churn = (previous, level)
        outputs = [
            self._update_output(
                state, {"type": a.kind, "event_id": a.event_id}, v, valuation, clock
            )
            for a, v in _versions(t.applied, old_version)
        ]
        if churn is not None:
            last = t.applied[-1]
            cause = "subscription_cancelled" if last.ends_subscription else last.kind
            outputs.append(self._churn(state, churn, valuation, clock, cause))
        return Result(
            outcome="applied",
            state=encode_state(state),
            outputs=outputs,
            total_ltv=valuation.total_ltv,
            churn=churn,
            next_check=self._next_check(state, clock, figures),
            customer=state,
            valuation=valuation,
        )

    def _inactivity(self, record: Record, stored: bytes | None, now: datetime) -> Result:
        """A due schedule entry: revalue as of the clock, publish a level change.

        Pure in the stored state, the clock and the purchases progress, so a
        duplicate or stale record (at-least-once delivery, or the customer
        bought after the entry fell due) finds the level unchanged and
        publishes nothing. Also reports held cancellations the customer's
        purchases partition has moved past. Does not move the event-time
        watermark: it is not an input event.
        """
        if record.key is None:
            raise EventError(ErrorCode.SCHEMA, "inactivity record without a key")
        if stored is None:  # nothing stored under the key: drop its entry
            return Result(outcome="unknown", next_check=NextCheck(None))
        clock = self.clock(now)
        notice = notify_unmatched(
            decode_state(stored), self.purchases_progress(record.partition), self.state_cfg
        )
        state = notice.state
        figures = self.figures(state, clock)
        valuation = value(figures, self.model, self.valuation_cfg, clock)
        level = valuation.churn_risk.value if valuation.churn_risk is not None else None
        outputs = self._notices(notice, record.partition, now)
        churn: tuple[str | None, str] | None = None
        if level is not None and level != state.risk:
            churn = (state.risk, level)
            state = set_risk(state, level, time_driven=True)
            cause: CauseFields = {"type": "inactivity"}
            outputs.append(self._update_output(state, cause, state.version, valuation, clock))
            outputs.append(self._churn(state, churn, valuation, clock, "inactivity"))
        changed = churn is not None or notice.outcome == "notified"
        return Result(
            outcome="applied" if churn is not None else notice.outcome,
            state=encode_state(state) if changed else None,
            outputs=outputs,
            dead_letter_codes=[ErrorCode.UNKNOWN_ORDER.value for _ in notice.notices],
            total_ltv=valuation.total_ltv if churn is not None else None,
            churn=churn,
            next_check=self._next_check(state, clock, figures),
            notice_at=NextCheck(notice_due(state, self.state_cfg)) if state.pending else None,
            customer=state,
            valuation=valuation if churn is not None else None,
        )

    def _next_check(
        self, state: CustomerState, clock: datetime, figures: CustomerFigures | None = None
    ) -> NextCheck:
        """The earliest instant a time-driven look at ``state`` can change its risk.

        That is the next churn-risk change (``ltv.schedule``), or now when the
        stored level is already stale (an event that did not revalue, a new
        model). ``figures`` are the state's as of ``clock`` when the caller
        has them already (the risk level is not among them).
        """
        if figures is None:
            figures = self.figures(state, clock)
        outlook = risk_outlook(figures, self.model, self.valuation_cfg.thresholds, clock)
        if outlook.current is not None and outlook.current.value != state.risk:
            return NextCheck(clock)
        return NextCheck(outlook.next_at)

    def _churn(
        self,
        s: CustomerState,
        churn: tuple[str | None, str],
        v: Valuation,
        clock: datetime,
        cause: str,
    ) -> Output:
        """The ltv.churn-risk record of a level change, at the state's version."""
        body = CHURN_ENCODER.encode(
            {
                "customer_id": s.customer_id,
                "version": s.version,
                "as_of": clock,
                "previous": churn[0],
                "current": churn[1],
                "p_alive": v.p_alive,
                "days_since_last_order": v.days_since_last_order,
                "expected_next_order_at": v.expected_next_order_at,
                "cause": cause,
            }
        )
        return Output("churn", s.customer_id.encode(), body)

    def _update_output(
        self, s: CustomerState, cause: CauseFields, version: int, v: Valuation, clock: datetime
    ) -> Output:
        return Output(
            "update", s.customer_id.encode(), self.update_body(s, cause, version, v, clock)
        )

    def current_update(self, stored: bytes, now: datetime) -> bytes:
        """The ltv.updates body of a stored customer as of now (GET /customers/{id}).

        Same fields and version as the latest published update; ``as_of`` is
        the current clock and ``cause`` is ``{"type": "query"}``, because the
        figures that depend on time (P(alive), expected orders) are re-valued.
        """
        state = envelope.customer_state(stored)
        clock = self.clock(now)
        valuation = value(self.figures(state, clock), self.model, self.valuation_cfg, clock)
        return self.update_body(state, {"type": "query"}, state.version, valuation, clock)

    def figures(self, s: CustomerState, clock: datetime) -> CustomerFigures:
        """The valuation inputs of a state, on the configured value basis."""
        summary = s.btyd(clock)
        margin_basis = self.valuation_cfg.basis is ValueBasis.MARGIN
        sub = s.subscription
        return CustomerFigures(
            orders=s.orders,
            net_revenue=s.net,
            net_margin=s.margin,
            first_order_at=s.first_order_at,
            last_order_at=s.last_order_at,
            x=summary.x if summary else 0,
            t_x=summary.t_x if summary else 0,
            T=summary.T if summary else 0,
            repeat_value=(
                (summary.repeat_margin if margin_basis else summary.repeat_net)
                if summary
                else Decimal(0)
            ),
            channel=s.channel,
            subscription_amount=sub.amount if sub is not None else None,
            subscription_margin_rate=self.state_cfg.default_margin if sub is not None else None,
            subscription_active=s.subscription_active,
            subscription_ended=s.subscription_churned,
            subscription_plan=sub.plan_id if sub is not None else None,
            subscription_interval=sub.interval if sub is not None else None,
            subscription_renewals=(
                completed_periods(sub.started_at, clock, sub.interval) if sub is not None else 0
            ),
            first_order=s.first_order() if s.first_order_at is not None else None,
        )

    def update_body(
        self, s: CustomerState, cause: CauseFields, version: int, v: Valuation, clock: datetime
    ) -> bytes:
        """The ltv.updates body of ``s`` at ``version``, valued ``v`` as of ``clock``."""
        model = self.model
        return UPDATE_ENCODER.encode(
            {
                "customer_id": s.customer_id,
                "version": version,
                "as_of": clock,
                "cause": cause,
                "currency": self.base_currency,
                "value_basis": self.valuation_cfg.basis.value,
                "orders": s.orders,
                "net_revenue": s.net,
                "aov": v.aov,
                "first_order_at": s.first_order_at,
                "last_order_at": s.last_order_at,
                "historic_ltv": v.historic_ltv,
                "formula_ltv": v.formula_ltv,
                "predicted_ltv": v.predicted_ltv,
                "total_ltv": v.total_ltv,
                "expected_orders": v.expected_orders,
                "p_alive": v.p_alive,
                "churn_risk": v.churn_risk.value if v.churn_risk is not None else None,
                "expected_next_order_at": v.expected_next_order_at,
                "segment": v.segment,
                "ltv_cac": v.ltv_cac,
                "model": None if model is None else {"name": model.name, "version": model.version},
                "nps_class": s.nps_class,
            }
        )

    def _notices(self, t: Transition, partition: int, now: datetime) -> list[Output]:
        """Held cancellations the purchases input has moved past: dead-letter notices."""
        outputs = []
        days = self.state_cfg.pending_window / timedelta(days=1)
        for order_id, held in t.notices:
            error = EventError(
                ErrorCode.UNKNOWN_ORDER,
                f"no purchase {order_id!r} yet, and purchases partition {partition} has "
                f"moved more than {days:g} days past the cancellation; still held: "
                "the refund is applied if the purchase comes",
            )
            letter = DeadLetter.build(
                source_topic=self.cancellations_topic,
                partition=-1,
                offset=-1,
                key=t.state.customer_id.encode(),
                value=held.event_json(t.state.customer_id, order_id),
                error=error,
                failed_at=now,
            )
            outputs.append(Output("dead_letter", t.state.customer_id.encode(), letter.to_json()))
        return outputs

    def _dead_output(self, record: Record, error: EventError, now: datetime) -> Output:
        value = record.value
        if len(value) > self.max_bytes:
            # Republished whole (base64 or escaped), an oversized value can exceed
            # what the producer or broker accepts, and the send would crash the
            # agent: keep its head; source partition and offset locate the rest.
            value = value[: self.max_bytes]
            error = EventError(
                error.code,
                f"{error.message}; value holds the first {len(value)} of {len(record.value)} bytes",
            )
        letter = DeadLetter.build(
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=value,
            error=error,
            failed_at=now,
        )
        return Output("dead_letter", record.key, letter.to_json())

    def _dead(self, record: Record, error: EventError, now: datetime) -> Result:
        return Result(
            outcome="dead_letter",
            outputs=[self._dead_output(record, error, now)],
            dead_letter_codes=[error.code.value],
        )


def _versions(applied: tuple[Applied, ...], old_version: int) -> list[tuple[Applied, int]]:
    """One consecutive version per incorporated event: consumers dedup by it."""
    return [(a, old_version + i) for i, a in enumerate(applied, start=1)]


def utc_now() -> datetime:
    return datetime.now(UTC)
