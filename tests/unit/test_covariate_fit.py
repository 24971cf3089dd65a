"""The fit job's covariate stage (streams.fit.choose_covariates) on the demo shop.

The demo shop's customers behave by acquisition channel and category breadth
(streams.demo), so the first order's covariates carry signal there; with the
same customers' covariates shuffled among them they carry none. The oracle
is the holdout itself: what the customers did after the split.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from ltv import mbgnbd
from ltv.formulas import ValueBasis
from state import envelope
from state.codec import encode_state
from state.customer import CustomerState, StateConfig, apply_event, new_state
from state.events import decode_event
from state.fx import load_fx_table
from streams.demo import DemoFeed
from streams.fit import Population, choose_covariates, fit_population

CFG = StateConfig(fx=load_fx_table(None, "USD"))
START = datetime(2024, 1, 1, tzinfo=UTC)
AS_OF = START + timedelta(days=730)


@pytest.fixture(scope="module")
def demo_population() -> Population:
    """Two years of a 6 000-customer demo shop, the last 180 days held out."""
    states: dict[str, CustomerState] = {}
    for event in DemoFeed(6000, 11, START, span_days=540.0):
        if event.occurred_at > AS_OF:
            continue
        parsed = decode_event(event.kind, orjson.dumps(event.value), fx=CFG.fx)
        state = states.get(event.key) or new_state(event.key)
        states[event.key] = apply_event(state, parsed, CFG).state
    pop = Population(AS_OF, ValueBasis.REVENUE, holdout_days=180)
    pop.add_all(envelope.encode(encode_state(s)) for s in states.values())
    return pop


def test_covariates_predict_the_holdout_better_where_behaviour_differs_by_them(
    demo_population: Population,
) -> None:
    record = fit_population(demo_population, AS_OF)
    assert record.selection is not None
    choice = record.selection.covariates
    assert choice is not None and choice.plain is not None and choice.scored is not None
    assert choice.used, choice.reason
    assert choice.scored.converged
    assert choice.p_value is not None and choice.p_value < 0.01
    assert choice.scored.holdout_log_likelihood > choice.plain.holdout_log_likelihood
    assert choice.scored.mean_absolute_error < choice.plain.mean_absolute_error
    assert any(c.startswith("channel=") for c in choice.columns)
    snapshot = record.snapshot()
    assert snapshot is not None and snapshot.covariates is not None
    assert snapshot.name == f"{record.orders_model}+covariates+gammagamma"
    # One-time buyers of the same day are no longer valued alike.
    firsts = demo_population.first_orders(range(len(demo_population)))
    params = {snapshot.orders_for(f) for f in firsts}
    assert len(params) > 1
    assert type(record).loads(record.dumps()) == record


def test_without_signal_the_plain_fit_is_kept(demo_population: Population) -> None:
    """The same customers with their first orders shuffled among them."""
    pop = demo_population
    order = list(range(len(pop)))
    random.Random(3).shuffle(order)
    shuffled = type(pop)(pop.as_of, pop.basis, pop.holdout_days)
    for name in ("x", "t_x", "T", "x_cal", "t_x_cal", "T_cal", "cal_rows"):
        setattr(shuffled, name, getattr(pop, name))
    shuffled.first_kinds = pop.first_kinds
    shuffled.first_kind = type(pop.first_kind)("i", (pop.first_kind[i] for i in order))
    shuffled.first_value = type(pop.first_value)("d", (pop.first_value[i] for i in order))
    full = {"mbgnbd": mbgnbd.fit(pop.x, pop.t_x, pop.T)}
    covariates, choice = choose_covariates(shuffled, "mbgnbd", full)
    assert covariates is None and not choice.used
    assert choice.reason is not None and choice.reason.startswith("no signal"), choice
