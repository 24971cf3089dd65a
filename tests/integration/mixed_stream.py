"""A seeded mixed input stream, its oracle, and the checks of the output contract.

Shared by the mixed-stream test and the fault-injection suite: the stream is
three years of synthetic shop traffic sent out of event-time order (shuffled
by weeks, and one record in twenty months late), with re-sent duplicates at
any distance, cancellations racing their purchases on the other topic, and a
share of garbage of every failure class. The oracle applies the pure
transitions (state.customer) to the valid events in a shuffled order of its
own (the state does not depend on it); the checks compare what a worker
published and stored with it.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from insights_oracle import Customer, assert_same

from ltv.insights import InsightsConfig, insights
from ltv.risk import RiskLevel
from ltv.valuation import Valuation
from state.customer import (
    CustomerState,
    StateConfig,
    apply_cancellation,
    apply_purchase,
    new_state,
)
from state.envelope import customer_state
from state.events import Cancellation, Purchase, decode_cancellation, decode_purchase
from state.fx import load_fx_table
from state.insights import Aggregate
from state.store.config import StoreConfig
from state.store.keys import KeyLayout
from state.store.sums import read_sums
from streams.demo import DemoFeed

CENT = Decimal("0.01")
#: (topic, key, value) of one Kafka record.
KafkaRecord = tuple[str, bytes | None, bytes]
#: Fields of an ltv.updates record that are functions of the state alone
#: (the others -- as_of, p_alive, predicted figures -- also of the valuation clock).
STATE_FIGURES = (
    "customer_id",
    "version",
    "cause",
    "currency",
    "value_basis",
    "orders",
    "net_revenue",
    "aov",
    "first_order_at",
    "last_order_at",
    "historic_ltv",
)


def garbage(topic: str, n: int) -> tuple[KafkaRecord, str]:
    """One bad record of class ``n % 6`` and the dead-letter code it must get."""
    body: dict[str, Any] = {
        "event_id": f"g-{n}",
        "order_id": f"go-{n}",
        "customer_id": f"g-{n}",
        "occurred_at": "2025-03-01T00:00:00Z",
        "amount": "1.00",
        "currency": "USD",
    }
    key = body["customer_id"].encode()
    kind = n % 6
    if kind == 0:
        return (topic, key, b"\xff\xfe{not json"), "invalid_json"
    if kind == 1:
        return (topic, key, orjson.dumps({**body, "amount": "-5"})), "schema"
    if kind == 2:
        return (topic, key, orjson.dumps({**body, "currency": "XYZ"})), "unknown_currency"
    if kind == 3:
        return (topic, b"someone-else", orjson.dumps(body)), "key_mismatch"
    if kind == 4:
        return (topic, key, orjson.dumps({**body, "note": "x" * 70_000})), "too_large"
    return (topic, key, orjson.dumps({**body, "occurred_at": "2025-03-01T00:00:00"})), "schema"


@dataclass
class MixedStream:
    """What to send (``records``, in order) and what it must produce."""

    purchases: str
    cancellations: str
    records: list[KafkaRecord]
    #: Every valid record sent, copies included.
    valid: list[KafkaRecord]
    #: Dead-letter codes the invalid records must get.
    codes: Counter[str]

    def oracle(self) -> Oracle:
        valid = set(self.valid)
        sent = [record for record in self.records if record in valid]
        return Oracle.of(sent, self.purchases)


#: Event-time span of a stream: longer than any window the product ever had.
HISTORY = timedelta(days=3 * 365)
#: How far a record is sent after its event time: a few weeks for most...
JITTER = timedelta(days=25)
#: ...and up to a year for one in twenty (offline and marketplace orders).
STRAGGLER = timedelta(days=365)
STRAGGLER_RATE = 0.05


def build_stream(
    purchases: str,
    cancellations: str,
    *,
    events: int,
    seed: int,
    customers: int | None = None,
    feed_seed: int = 5,
    duplicate_rate: float = 0.05,
    garbage_rate: float = 0.01,
) -> MixedStream:
    """``events`` records: shop traffic, re-sent copies and garbage (seeded)."""
    rng = random.Random(seed)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    originals = int(events * (1 - duplicate_rate - garbage_rate))
    feed = DemoFeed(
        customers or max(50, originals // 3),
        seed=feed_seed,
        start=start,
        span_days=HISTORY.days,
        feedback=False,
    )
    timed = []
    for ev in feed:
        topic = purchases if ev.kind == "purchase" else cancellations
        at = datetime.fromisoformat(ev.value["occurred_at"])
        if at - start > HISTORY:
            break
        late = STRAGGLER if rng.random() < STRAGGLER_RATE else JITTER
        timed.append((at + late * rng.random(), (topic, ev.key.encode(), orjson.dumps(ev.value))))
        if len(timed) >= originals:
            break
    if len(timed) < originals:
        raise ValueError(f"only {len(timed)} feed events within {HISTORY}: raise customers")
    timed.sort(key=lambda pair: pair[0])
    good: list[KafkaRecord] = [record for _, record in timed]
    records = list(good)
    for _ in range(int(events * duplicate_rate)):  # re-sent later, near or far
        i = rng.randrange(len(good))
        gap = rng.randint(1, 200) if rng.random() < 0.5 else rng.randint(1, len(good))
        records.insert(min(len(records), i + gap), good[i])
    valid = list(records)
    codes: Counter[str] = Counter()
    for n in range(events - len(records)):
        record, code = garbage(purchases if n % 2 else cancellations, n)
        records.insert(rng.randrange(len(records)), record)
        codes[code] += 1
    return MixedStream(purchases, cancellations, records, valid, codes)


@dataclass
class Oracle:
    """Final states and counts from the pure transitions over the valid events."""

    states: dict[str, CustomerState]
    outcomes: Counter[str]
    #: Event ids of cancellations a worker may report as unknown_order: held
    #: (sent before their purchase, or with none at all) while some purchase
    #: sent earlier was more than the pending window newer (``notice_allowed``).
    may_notice: frozenset[str]

    @classmethod
    def of(cls, valid: Iterable[KafkaRecord], purchases_topic: str) -> Oracle:
        """``valid``: every valid record in the order it was sent, copies included."""
        fx = load_fx_table(None, "USD")
        cfg = StateConfig(fx=fx, pending_window=PENDING_WINDOW)
        decoded: list[Purchase | Cancellation] = []
        for topic, _, value in valid:
            if topic == purchases_topic:
                decoded.append(decode_purchase(value, fx=fx))
            else:
                decoded.append(decode_cancellation(value, fx=fx))
        may_notice = notice_allowed(decoded, PENDING_WINDOW)
        random.Random(0).shuffle(decoded)  # any order gives the same states
        states: dict[str, CustomerState] = {}
        outcomes: Counter[str] = Counter()
        for e in decoded:
            state = states.get(e.customer_id) or new_state(e.customer_id)
            if isinstance(e, Purchase):
                t = apply_purchase(state, e, cfg)
            else:
                t = apply_cancellation(state, e, cfg)
            states[e.customer_id] = t.state
            outcomes[t.outcome] += 1
        return cls(states, outcomes, may_notice)

    @property
    def applied(self) -> int:
        """Input events incorporated into some state: one ltv.updates version each."""
        return sum(s.version for s in self.states.values())


#: LTV_PENDING_CANCELLATION_DAYS of the workers under test (the default).
PENDING_WINDOW = timedelta(days=30)


def notice_allowed(sent: Iterable[Purchase | Cancellation], window: timedelta) -> frozenset[str]:
    """Cancellations a worker may report as unknown_order, given the send order.

    A notice needs the cancellation held (its purchase not read yet) while the
    purchases input has moved more than ``window`` past it. Whatever the
    partitioning and the interleaving of the two topics, that can only happen
    if some purchase sent before the order's first purchase record (or at all,
    when there is none) is more than ``window`` newer than the cancellation.
    """
    events = list(sent)
    newest: list[datetime | None] = []  # newest purchase time sent before index i
    top: datetime | None = None
    first_sent: dict[tuple[str, str], int] = {}
    for i, e in enumerate(events):
        newest.append(top)
        if isinstance(e, Purchase):
            first_sent.setdefault((e.customer_id, e.order_id), i)
            top = e.occurred_at if top is None else max(top, e.occurred_at)
    allowed = set()
    for e in events:
        if isinstance(e, Cancellation):
            i = first_sent.get((e.customer_id, e.order_id))
            before = top if i is None else newest[i]
            if before is not None and before > e.occurred_at + window:
                allowed.add(e.event_id)
    return frozenset(allowed)


@dataclass
class Report:
    """What one case saw, for the summary table; ``problems`` must stay empty."""

    events_in: int = 0
    applied: int = 0
    duplicates_dropped: int = 0
    dead_lettered: int = 0
    replayed_outputs: int = 0
    mismatches: int = 0
    problems: list[str] = field(default_factory=list)
    #: Kafka history of the first customers named in ``problems`` (diagnosis).
    history: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.problems.append(message)


def source_letters(needed: int) -> Callable[[list[bytes]], bool]:
    """A ``consume_raw`` condition: ``needed`` distinct dead letters of input records
    (replays of one record count once; notices of held cancellations not at all,
    since how many come depends on the interleaving)."""
    seen: set[tuple[Any, ...]] = set()
    done = 0

    def enough(values: list[bytes]) -> bool:
        nonlocal done
        for raw in values[done:]:
            d = orjson.loads(raw)
            if d["offset"] >= 0:
                seen.add((d["source_topic"], d["partition"], d["offset"]))
        done = len(values)
        return len(seen) >= needed

    return enough


def check_dead_letters(
    report: Report,
    letters: Iterable[Mapping[str, Any]],
    expected: Counter[str],
    may_notice: frozenset[str] = frozenset(),
) -> None:
    """Each bad input dead-lettered once (replays of one source record count once);
    unknown_order notices only for cancellations in ``may_notice``."""
    distinct: dict[tuple[Any, ...], str] = {}
    total = 0
    noticed: set[str] = set()
    for letter in letters:
        total += 1
        code = letter["error"]["code"]
        if letter["offset"] >= 0:
            identity: tuple[Any, ...] = (letter["source_topic"], letter["partition"])
            identity += (letter["offset"],)
        else:  # a notice of a held cancellation: no source record
            identity = (code, letter["key"], letter["value"])
            noticed.add(orjson.loads(letter["value"])["event_id"])
        distinct[identity] = code
    report.dead_lettered = len(distinct)
    report.replayed_outputs += total - len(distinct)
    got = Counter(c for i, c in distinct.items() if i[0] != "unknown_order")
    want = Counter({c: n for c, n in expected.items() if c != "unknown_order"})
    if got != want:
        extra = [(i, c) for i, c in distinct.items() if got[c] > want.get(c, 0)][:5]
        report.fail(f"dead-letter codes {dict(got)} != expected {dict(want)}; e.g. {extra}")
    if noticed - may_notice:
        early = sorted(noticed - may_notice)[:5]
        report.fail(f"unknown_order before purchases moved past the cancellation: {early}")


def check_updates(
    report: Report,
    raw_updates: Iterable[bytes],
    states: Mapping[str, CustomerState],
    churn: Iterable[Mapping[str, Any]] = (),
) -> dict[str, dict[str, Any]]:
    """The output contract of ltv.updates, read in offset order per partition.

    Per customer, dropping replays (a version at or below the newest seen)
    leaves versions 1, 2, 3, ... without a gap; a replayed version is
    byte-identical to the first copy when rendered at the same ``as_of``
    and equal in every state figure otherwise; the newest equals the final
    state. Every churn-risk record matches an update of its version.
    Returns the newest update per customer.
    """
    newest: dict[str, dict[str, Any]] = {}
    first: dict[tuple[str, int], tuple[bytes, dict[str, Any]]] = {}
    levels: dict[tuple[str, int], set[Any]] = defaultdict(set)
    for raw in raw_updates:
        update = orjson.loads(raw)
        customer, version = update["customer_id"], update["version"]
        levels[(customer, version)].add(update["churn_risk"])
        last = newest.get(customer, {}).get("version", 0)
        if version <= last:
            report.replayed_outputs += 1
            seen = first.get((customer, version))
            if seen is None:
                report.fail(f"{customer}: replayed version {version} never seen before")
            elif _differs(seen, raw, update):
                report.fail(f"{customer}: replay of version {version} differs: {update}")
            continue
        if version != last + 1:
            report.fail(f"{customer}: version {version} follows {last} (gap)")
        newest[customer] = update
        first[(customer, version)] = (raw, update)
    for record in churn:
        if record["current"] not in levels.get((record["customer_id"], record["version"]), ()):
            report.fail(f"churn-risk record without a matching update: {record}")
    report.applied = sum(u["version"] for u in newest.values())
    for customer_id, state in states.items():
        got = newest.get(customer_id)
        want = expected_figures(state)
        have = None if got is None else {k: got[k] for k in want}
        if have != (want if state.version else None):
            report.mismatches += 1
            report.fail(f"{customer_id}: newest update {have} != final state {want}")
    for customer_id in set(newest) - set(states):
        report.mismatches += 1
        report.fail(f"{customer_id}: updates for a customer the oracle does not know")
    return newest


def _differs(seen: tuple[bytes, dict[str, Any]], raw: bytes, update: dict[str, Any]) -> bool:
    seen_raw, seen_update = seen
    if seen_update["as_of"] == update["as_of"]:
        return seen_raw != raw
    return any(seen_update[k] != update[k] for k in STATE_FIGURES)


def expected_figures(state: CustomerState) -> dict[str, Any]:
    """The ltv.updates figures a final state must show."""

    def utc(at: datetime | None) -> str | None:
        return None if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")

    return {
        "version": state.version,
        "orders": state.orders,
        "net_revenue": str(state.net.quantize(CENT)),
        "historic_ltv": str(state.net.quantize(CENT)),
        "first_order_at": utc(state.first_order_at),
        "last_order_at": utc(state.last_order_at),
    }


def stored_states(redis_url: str, app_id: str, partitions: int) -> dict[str, CustomerState]:
    """Every ``customers`` state in Redis, decoded (state.envelope, state.codec)."""
    client: Any = StoreConfig.from_url(redis_url).sync_client()
    layout = KeyLayout(app_id, "customers")
    states = {}
    try:
        for partition in range(partitions):
            for key, raw in client.hscan_iter(layout.data_key(partition), count=1000):
                states[key.decode()] = customer_state(raw)
    finally:
        client.close()
    return states


def check_stored(
    report: Report, stored: Mapping[str, CustomerState], states: Mapping[str, CustomerState]
) -> None:
    """Redis holds exactly the oracle's states (the valuation's risk level aside)."""
    for customer_id in set(stored) | set(states):
        have, want = stored.get(customer_id), states.get(customer_id)
        if have is None or want is None or replace(have, risk=None) != want:
            report.mismatches += 1
            report.fail(f"{customer_id}: stored state differs from the oracle's")


def published_valuation(update: Mapping[str, Any] | None) -> Valuation | None:
    """The parts of a customer's newest ltv.updates record the group figures read."""
    if update is None:
        return None
    predicted, risk = update["predicted_ltv"], update["churn_risk"]
    return Valuation(
        historic_ltv=Decimal(update["historic_ltv"]),
        aov=None,
        formula_ltv=None,
        predicted_ltv=None if predicted is None else Decimal(predicted),
        total_ltv=Decimal(update["total_ltv"]),
        expected_orders=None,
        p_alive=None,
        churn_risk=None if risk is None else RiskLevel(risk),
        expected_next_order_at=None,
        segment=update["segment"],
        ltv_cac=None,
        days_since_last_order=None,
    )


async def stored_sums(redis_url: str, app_id: str, partitions: int) -> Aggregate:
    """Every partition's insights sums in Redis, merged (state.store.sums)."""
    client: Any = StoreConfig.from_url(redis_url).async_client()
    try:
        per_partition = await read_sums(client, KeyLayout(app_id, "customers"), range(partitions))
    finally:
        await client.aclose()
    merged = Aggregate()
    for sums in per_partition.values():
        merged.merge(Aggregate(sums))
    return merged


async def check_insights(
    report: Report,
    sums: Aggregate,
    states: Mapping[str, CustomerState],
    newest: Mapping[str, Mapping[str, Any]],
    cfg: InsightsConfig,
) -> None:
    """The group figures of the stored sums equal the oracle's (insights_oracle),
    computed from the final states and each customer's newest update."""
    customers = [
        Customer(state, published_valuation(newest.get(cid)), state.nps_class)
        for cid, state in states.items()
        if state.version
    ]
    latest = max((s.last_order_at for s in states.values() if s.last_order_at), default=None)
    clock = max(datetime.now(UTC), latest or datetime.now(UTC))
    try:
        assert_same(insights(sums, clock, cfg), customers, clock, cfg)
    except AssertionError as exc:
        report.mismatches += 1
        report.fail(f"insights of the stored sums differ from the oracle: {str(exc)[:3000]}")
