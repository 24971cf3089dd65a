"""The CDNOW 1/10 sample, the BTYD models' published benchmark (docs/valuation.md).

2 357 customers who first bought in Q1 1997, shipped inside the ``lifetimes``
wheel (a test dependency) and read straight from its package directory, so
that the checks do not depend on lifetimes' own modules importing.
Calibration = through 1997-09-30, the end of week 39, as in the papers.
Shared by the unit and integration suites: as rows, as summaries, and as
the customer states the customers table stores.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np

from ltv.summary import Summaries, summarise
from state import envelope
from state.codec import encode_state
from state.customer import CustomerState, StateConfig, apply_purchase, new_state
from state.events import Purchase
from state.fx import load_fx_table

CALIBRATION_END = np.datetime64("1997-09-30")
ORIGIN = np.datetime64("1997-01-01")

Rows = tuple[np.ndarray, np.ndarray, np.ndarray]


def datasets_dir() -> Path:
    spec = importlib.util.find_spec("lifetimes")
    assert spec is not None and spec.submodule_search_locations, "lifetimes is a test dependency"
    return Path(next(iter(spec.submodule_search_locations))) / "datasets"


def load_rows() -> Rows:
    """(customer id, day number since 1997-01-01, amount) of every transaction line."""
    ids, days, values = [], [], []
    for line in (datasets_dir() / "CDNOW_sample.txt").read_text().splitlines():
        _, customer, date, _, amount = line.split()
        ids.append(int(customer))
        days.append(np.datetime64(f"{date[:4]}-{date[4:6]}-{date[6:]}"))
        values.append(float(amount))
    day_numbers = (np.array(days) - ORIGIN).astype(np.float64)
    return np.array(ids), day_numbers, np.array(values)


def calibration_summaries(rows: Rows) -> Summaries:
    """Summaries in days as of the end of the calibration period."""
    ids, days, values = rows
    as_of = float((CALIBRATION_END - ORIGIN).astype(np.float64))
    return summarise(ids, days, values, as_of)


#: Day 0 of the rows' day numbers, as a clock.
ORIGIN_TIME = datetime(1997, 1, 1, tzinfo=UTC)
STATE_CONFIG = StateConfig(fx=load_fx_table(base="USD"), default_margin=Decimal("0.5"))


def cdnow_states(last_day: int) -> list[CustomerState]:
    """The transactions through ``last_day`` (days since 1997-01-01) as customer states."""
    ids, days, values = load_rows()
    states: dict[int, CustomerState] = {}
    for row, (customer, day, amount) in enumerate(
        zip(ids.tolist(), days.tolist(), values.tolist(), strict=True)
    ):
        if day > last_day:
            continue
        cid = str(customer)
        event = Purchase.model_validate(
            {
                "event_id": f"e-r{row}",
                "order_id": f"r{row}",
                "customer_id": cid,
                "occurred_at": (ORIGIN_TIME + timedelta(days=day)).isoformat(),
                "amount": f"{amount:.2f}",
                "currency": "USD",
            }
        )
        state = states.get(customer) or new_state(cid)
        states[customer] = apply_purchase(state, event, STATE_CONFIG).state
    return list(states.values())


def table_value(state: CustomerState) -> bytes:
    """What the customers table stores for ``state`` (nothing owed)."""
    return envelope.encode(encode_state(state))
