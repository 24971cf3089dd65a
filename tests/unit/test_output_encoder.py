"""state.events.OutputEncoder writes the bytes the pydantic output models write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state.events import (
    CHURN_ENCODER,
    UPDATE_ENCODER,
    ChurnRiskChange,
    LtvUpdate,
    OutputEncoder,
    _Output,
)

zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
)
times = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=zones
)
money = st.decimals(min_value=0, max_value=Decimal("1e12"), places=6, allow_nan=False)
floats = st.floats(allow_nan=False, allow_infinity=False)
ids = st.text(min_size=1, max_size=20)
levels = st.sampled_from(["low", "medium", "high", "churned"])


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


updates = st.fixed_dictionaries(
    {
        "customer_id": ids,
        "version": st.integers(0, 2**40),
        "as_of": times,
        "cause": st.fixed_dictionaries(
            {
                "type": st.sampled_from(
                    ["purchase", "cancellation", "feedback", "inactivity", "query"]
                )
            },
            optional={"event_id": optional(ids)},
        ),
        "currency": st.sampled_from(["USD", "EUR"]),
        "value_basis": st.sampled_from(["revenue", "margin"]),
        "orders": st.integers(0, 10**6),
        "net_revenue": money,
        "aov": optional(money),
        "first_order_at": optional(times),
        "last_order_at": optional(times),
        "historic_ltv": money,
        "formula_ltv": optional(money),
        "predicted_ltv": optional(money),
        "total_ltv": money,
        "expected_orders": optional(floats),
        "p_alive": optional(floats),
        "churn_risk": optional(levels),
        "expected_next_order_at": optional(times),
        "segment": optional(ids),
        "ltv_cac": optional(floats),
        "model": optional(
            st.fixed_dictionaries({"name": ids}, optional={"version": optional(ids)})
        ),
        "nps_class": st.sampled_from(["promoter", "passive", "detractor", "unknown"]),
    }
)
churns = st.fixed_dictionaries(
    {
        "customer_id": ids,
        "version": st.integers(0, 2**40),
        "as_of": times,
        "previous": optional(levels),
        "current": levels,
        "p_alive": optional(floats),
        "days_since_last_order": optional(st.integers(0, 10**5)),
        "expected_next_order_at": optional(times),
        "cause": st.sampled_from(["purchase", "feedback", "inactivity", "subscription_cancelled"]),
    }
)


@settings(max_examples=500, deadline=None)
@given(values=updates)
def test_update_encoder_writes_what_the_model_writes(values: dict[str, Any]) -> None:
    assert UPDATE_ENCODER.encode(values) == LtvUpdate(**values).to_json()


@settings(max_examples=300, deadline=None)
@given(values=churns)
def test_churn_encoder_writes_what_the_model_writes(values: dict[str, Any]) -> None:
    assert CHURN_ENCODER.encode(values) == ChurnRiskChange(**values).to_json()


def test_a_missing_required_field_is_an_error_not_a_null() -> None:
    with pytest.raises(KeyError):
        CHURN_ENCODER.encode({"customer_id": "c-1"})


def test_a_field_type_it_cannot_derive_is_refused_when_built() -> None:
    class Odd(_Output):
        either: int | str

    with pytest.raises(TypeError, match="no fast encoding"):
        OutputEncoder(Odd)
