"""Calibration tracking: predictions against an oracle, counts against a hand count.

The oracles share nothing with ``ltv.calibration`` but the model's
``expected_orders`` and ``rfm_score`` (the definitions being calibrated):
predictions are summed customer by customer, counts recomputed from the
list of events with dates, never from a customer state.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from test_model_fit import FakeRedis, table_value

from ltv.bgnbd import BGNBDParams
from ltv.calibration import (
    COHORT_MONTHS,
    KEEP_CLOSED,
    OLDER,
    WINDOWS,
    Breakdown,
    Calibration,
    Count,
    Window,
    month_index,
    predict,
)
from ltv.formulas import ValueBasis
from ltv.mbgnbd import MBGNBDParams
from ltv.orders import FAMILIES, OrdersParams
from ltv.paretonbd import ParetoNBDParams
from ltv.rfm import RfmEdges, rfm_score
from ltv.valuation import ValuationConfig
from state.customer import CustomerState, StateConfig, apply_event, new_state
from state.events import Cancellation, Purchase
from state.fx import load_fx_table
from state.model_store import ModelRecord, load_model
from state.store.keys import KeyLayout
from streams.calibration import Tally
from streams.fit import ModelInForce, Population, run_fit
from streams.metrics import METRICS, sample_value
from streams.processing import Processor
from streams.settings import Settings

CFG = StateConfig(fx=load_fx_table(base="USD"), default_margin=Decimal("0.5"))
START = datetime(2026, 6, 15, 12, tzinfo=UTC)
EDGES = RfmEdges(
    recency=(10.0, 40.0, 90.0, 200.0), frequency=(0.0, 1.0, 2.0, 5.0), monetary=(1, 2, 3, 4)
)
PARAMS: dict[str, OrdersParams] = {
    "bgnbd": BGNBDParams(r=0.24, alpha=30.9, a=0.79, b=2.43),
    "mbgnbd": MBGNBDParams(r=0.52, alpha=43.3, a=0.89, b=1.61),
    "paretonbd": ParetoNBDParams(r=0.55, alpha=74.0, s=0.61, beta=81.7),
}


def cohort_of(first: datetime, start: datetime) -> str:
    """The oracle's cohort: calendar months between the first order and ``start``."""
    months = (start.year - first.year) * 12 + start.month - first.month
    return OLDER if months > COHORT_MONTHS else first.strftime("%Y-%m")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_predictions_are_the_sum_of_every_customers_expected_orders(name: str) -> None:
    family, params = FAMILIES[name], PARAMS[name]
    rng = random.Random(7)
    customers = []
    for _ in range(400):
        age = rng.randint(0, 1200)  # some older than the cohort horizon
        t_x = rng.randint(0, age) if rng.random() < 0.6 else 0
        x = rng.randint(1, 1 + t_x // 7) if t_x else 0
        first = START - timedelta(days=age, hours=rng.randint(0, 23))
        customers.append((float(x), float(t_x), float(age), float(age - t_x), first))
    x, t_x, T, recency, first = zip(*customers, strict=True)
    windows = predict(
        family,
        params,
        (x, t_x, T),
        recency,
        [month_index(f) for f in first],
        EDGES,
        START,
        WINDOWS,
        version="v1",
        orders_model=name,
    )
    assert [w.days for w in windows] == list(WINDOWS)
    for window in windows:
        total = 0.0
        by_cohort: Counter[str] = Counter()
        by_segment: Counter[str] = Counter()
        for cx, ct, cT, cr, cf in customers:
            one = float(
                family.expected_orders(
                    params, window.days, np.array([cx]), np.array([ct]), np.array([cT])
                )[0]
            )
            total += one
            by_cohort[cohort_of(cf, START)] += one
            by_segment[rfm_score(cr, cx, 0.0, EDGES).segment.value] += one
        assert window.predicted.total == pytest.approx(total, rel=1e-9)
        assert window.predicted.by_cohort == pytest.approx(dict(by_cohort), rel=1e-9)
        assert window.predicted.by_segment == pytest.approx(dict(by_segment), rel=1e-9)
        assert OLDER in window.predicted.by_cohort
        assert (window.start, window.until) == (START, START + timedelta(days=window.days))
    assert windows[1].predicted.total > windows[0].predicted.total


def purchase(customer: str, order: str, at: datetime) -> Purchase:
    return Purchase.model_validate(
        {
            "event_id": f"p-{order}",
            "order_id": order,
            "customer_id": customer,
            "occurred_at": at.isoformat(),
            "amount": "10",
            "currency": "USD",
        }
    )


def cancellation(customer: str, order: str, at: datetime) -> Cancellation:
    return Cancellation.model_validate(
        {
            "event_id": f"c-{order}",
            "order_id": order,
            "customer_id": customer,
            "occurred_at": at.isoformat(),
            "scope": "order",
        }
    )


def hours(h: float) -> datetime:
    return START + timedelta(hours=h)


#: Per customer: orders (id, time) and the ids cancelled in full.
HISTORIES: dict[str, tuple[list[tuple[str, datetime]], set[str]]] = {
    # Two orders on one day in the window count once; the day of START does not count.
    "a": (
        [("a1", hours(-2000)), ("a2", hours(3)), ("a3", hours(50)), ("a4", hours(52))],
        set(),
    ),
    # Bought right at the end of the 30-day window and after it.
    "b": ([("b1", hours(-24 * 400)), ("b2", hours(24 * 30 - 13)), ("b3", hours(24 * 31))], set()),
    # An order in the window cancelled in full is no purchase day; a late
    # order before START arriving last moves the segment at START.
    "c": (
        [("c1", hours(-24 * 100)), ("c2", hours(24 * 5)), ("c3", hours(24 * 6)), ("c4", hours(-5))],
        {"c2"},
    ),
    # First order after START: not in the population the prediction was for.
    "d": ([("d1", hours(24)), ("d2", hours(24 * 10))], set()),
    # Cohort older than the horizon, buying every ten days.
    "e": ([(f"e{n}", hours(-24 * 900 + 240 * n)) for n in range(100)], set()),
    # Only the first order (START's own day, earlier): nothing to count.
    "f": ([("f1", hours(-1))], set()),
}


def hand_count(window_days: int) -> tuple[int, Counter[str], Counter[str]]:
    """Purchase days in (START's day, + window_days] from the event list alone."""
    first_day = START.date()
    total, cohorts, segments = 0, Counter[str](), Counter[str]()
    for orders, cancelled in HISTORIES.values():
        live = sorted(at for order, at in orders if order not in cancelled)
        if live[0] > START:
            continue
        days = {at.date() for at in live}
        n = sum(1 for d in days if 0 < (d - first_day).days <= window_days)
        if not n:
            continue
        before = [at for at in live if at <= START]
        frequency = len({at.date() for at in before}) - 1
        recency = (START - before[-1]).days
        total += n
        cohorts[cohort_of(live[0], START)] += n
        segments[rfm_score(recency, frequency, 0.0, EDGES).segment.value] += n
    return total, cohorts, segments


def states(seed: int) -> list[CustomerState]:
    """Every customer's state, its events applied in a shuffled order (cancellations
    before their purchases too)."""
    rng = random.Random(seed)
    out = []
    for customer, (orders, cancelled) in HISTORIES.items():
        events: list[Purchase | Cancellation] = [purchase(customer, o, at) for o, at in orders]
        events += [cancellation(customer, o, at) for o, at in orders if o in cancelled]
        rng.shuffle(events)
        state = new_state(customer)
        for event in events:
            state = apply_event(state, event, CFG).state
        out.append(state)
    return out


def open_window(days: int, start: datetime = START, total: float = 5.0) -> Window:
    return Window(days, start, "v", "mbgnbd", EDGES, Breakdown(total))


@pytest.mark.parametrize("seed", range(6))
def test_counted_purchase_days_match_a_hand_count_in_any_arrival_order(seed: int) -> None:
    calibration = Calibration(open=tuple(open_window(d) for d in WINDOWS))
    as_of = START + timedelta(days=max(WINDOWS))
    pop = Population(as_of, ValueBasis.REVENUE, calibration=Tally.due(calibration, as_of))
    for state in states(seed):
        pop.add(table_value(state))
    assert [c.window.days for c in pop.calibration.counts] == list(WINDOWS)
    for count in pop.calibration.counts:
        total, cohorts, segments = hand_count(count.window.days)
        assert (count.total, count.by_cohort, count.by_segment) == (total, cohorts, segments)
        closed = count.closed(as_of)
        assert closed.actual == Breakdown(total, dict(cohorts), dict(segments))
        assert closed.ratio == total / 5.0
    assert pop.calibration.counts[0].total > 0


def test_a_window_is_counted_once_it_has_ended_and_only_then() -> None:
    calibration = Calibration(open=(open_window(30),))
    assert calibration.due(START + timedelta(days=30) - timedelta(seconds=1)) == ()
    assert calibration.due(START + timedelta(days=30)) == calibration.open
    count = Count(open_window(30))
    # A purchase after the window's last day is no part of it.
    count.add(START - timedelta(days=3), {START.toordinal() + 31}, lambda _: START)
    assert count.total == 0


def predictions(
    asked: list[tuple[int, ...]], start: datetime
) -> Callable[[tuple[int, ...]], tuple[Window, ...]]:
    """A stand-in for ``predict`` that records which lengths it was asked for."""

    def make(lengths: tuple[int, ...]) -> tuple[Window, ...]:
        asked.append(lengths)
        return tuple(open_window(d, start) for d in lengths)

    return make


def test_each_length_has_at_most_one_open_window_judged_in_turn() -> None:
    asked: list[tuple[int, ...]] = []
    first = Calibration().advance(START, (), predictions(asked, START))
    assert asked == [WINDOWS] and {w.days for w in first.open} == set(WINDOWS)

    later = START + timedelta(days=10)
    assert first.due(later) == ()
    assert first.advance(later, (), predictions(asked, later)) == first
    assert asked == [WINDOWS]  # nothing new while both are open

    after_30 = START + timedelta(days=31)
    (due,) = first.due(after_30)
    closed = Count(due).closed(after_30)
    second = first.advance(after_30, (closed,), predictions(asked, after_30))
    assert asked[-1] == (30,)
    assert second.closed == (closed,) and second.latest(30) == closed
    assert sorted((w.days, w.start) for w in second.open) == [(30, after_30), (90, START)]


def test_a_fit_on_an_earlier_clock_drops_the_windows_it_precedes() -> None:
    asked: list[tuple[int, ...]] = []
    earlier = START - timedelta(days=100)
    calibration = Calibration(open=(open_window(30), open_window(90)))
    moved = calibration.advance(earlier, (), predictions(asked, earlier))
    assert asked == [WINDOWS] and {w.start for w in moved.open} == {earlier}


def test_the_last_closed_windows_of_each_length_are_kept() -> None:
    closed = tuple(
        Count(open_window(d, START + timedelta(days=n))).closed(START + timedelta(days=n + d))
        for n in range(KEEP_CLOSED + 5)
        for d in WINDOWS
    )
    kept = Calibration().advance(START, closed, lambda lengths: ()).closed
    for d in WINDOWS:
        mine = [w for w in kept if w.days == d]
        assert mine == [w for w in closed if w.days == d][-KEEP_CLOSED:]


def sample_calibration() -> Calibration:
    actual = Breakdown(7, {"2026-01": 4, OLDER: 3}, {"champions": 7})
    judged = Window(
        30,
        START - timedelta(days=40),
        "v0",
        "bgnbd",
        EDGES,
        Breakdown(8.25, {"2026-01": 5.0, OLDER: 3.25}, {"champions": 8.25}),
        actual,
        START,
    )
    return Calibration(open=(open_window(30), open_window(90)), closed=(judged,))


def test_the_document_round_trips_through_json() -> None:
    record = ModelRecord(fitted_at=START, as_of=START, calibration=sample_calibration())
    loaded = ModelRecord.loads(record.dumps())
    assert loaded == record
    assert loaded.as_json()["calibration"]["closed"][0]["ratio"] == 7 / 8.25
    # Documents stored before calibration tracking load with none.
    assert ModelRecord.loads(b'{"version": null}').calibration == Calibration()


def test_adopting_a_model_exports_the_last_ratio_and_the_open_prediction() -> None:
    registry = METRICS.registry
    processor = Processor(CFG, ValuationConfig(), base_currency="USD", max_bytes=65536)
    model = ModelInForce(processor)
    calibration = sample_calibration()
    assert model.apply(ModelRecord(version="a", fitted_at=START, calibration=calibration))
    judged = calibration.closed[0]
    assert judged.actual is not None
    ratio = judged.actual.total / judged.predicted.total
    assert sample_value(METRICS.model_calibration_ratio.labels("30d")) == ratio
    assert registry.get_sample_value("ltv_model_calibration_ratio", {"window": "90d"}) is None
    for days in WINDOWS:
        predicted = METRICS.model_calibration_predicted.labels(f"{days}d")
        assert sample_value(predicted) == open_window(days).predicted.total
    # A document with nothing closed exports no ratio at all.
    assert model.apply(ModelRecord(version="b", fitted_at=START))
    assert registry.get_sample_value("ltv_model_calibration_ratio", {"window": "30d"}) is None
    assert registry.get_sample_value("ltv_model_calibration_predicted", {"window": "30d"}) is None


async def test_run_fit_opens_windows_and_a_later_fit_closes_them() -> None:
    """Two fits through Redis: the first predicts, the second (30 days on) judges
    the 30-day window on purchases made in between."""
    settings = Settings(app_id="unit-calibration", partitions=2, fit_holdout_days=0)
    client = FakeRedis()
    layout = KeyLayout(settings.app_id, "customers")
    rng = random.Random(3)
    origin = START - timedelta(days=400)
    histories: dict[str, list[datetime]] = {}
    for i in range(300):
        at = origin + timedelta(days=rng.uniform(0, 300))
        gap, life = rng.uniform(5, 80), rng.expovariate(1 / 300)
        times = []
        while at <= START + timedelta(days=30) and at <= origin + timedelta(days=life):
            times.append(at)
            at += timedelta(days=rng.expovariate(1 / gap))
        histories[f"k{i}"] = times or [origin]

    def store(until: datetime) -> None:
        for n, (customer, times) in enumerate(histories.items()):
            state = new_state(customer)
            for k, at in enumerate(t for t in times if t <= until):
                state = apply_event(state, purchase(customer, f"{customer}-{k}", at), CFG).state
            partition = client.data.setdefault(layout.data_key(n % 2).decode(), {})
            partition[customer.encode()] = table_value(state)

    store(START)
    first = await run_fit(client, settings, START)
    assert first.error is None and first.record is not None
    assert {w.days for w in first.record.calibration.open} == set(WINDOWS)
    assert first.record.calibration.closed == ()

    later = START + timedelta(days=30)
    store(later)
    second = await run_fit(client, settings, later)
    assert second.record is not None
    stored = await load_model(client, settings.app_id)
    assert stored is not None and stored.calibration == second.record.calibration
    (judged,) = stored.calibration.closed
    expected = sum(
        len({t.date() for t in times if START.date() < t.date() <= later.date()})
        for times in histories.values()
        if times[0] <= START
    )
    assert judged.days == 30 and judged.actual is not None
    assert judged.actual.total == expected > 0
    predicted = first.record.calibration.open_window(30)
    assert predicted is not None and judged.predicted == predicted.predicted
    assert sorted((w.days, w.start) for w in stored.calibration.open) == [(30, later), (90, START)]
