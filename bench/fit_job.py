"""Wall time and peak memory of the model-fit job (streams.fit) over states in Redis.

Writes encoded customer states straight into the ``customers`` hashes of a
throw-away app id, runs the job exactly as ``ltv fit`` does (HSCAN, decode,
fit, store) and prints its time and the job process's peak RSS; the keys are
deleted afterwards. The states are written by a child process, so the peak
RSS is the job's own.

* ``cdnow``: the 2 357 CDNOW customers (calibration transactions, as of
  1997-09-30).
* ``synthetic``: N customers drawn from MBG/NBD with the CDNOW parameters in
  days (ages uniform over two years) and Gamma-Gamma spend, every order in
  the ledger as the worker keeps it (the earlier repeat orders on distinct
  days drawn uniformly before the last one, as a Poisson process puts
  them). Each has an acquisition channel whose customers buy at their own
  pace (``CHANNELS``: alpha scaled), so the fit's covariate stage has
  signal to find and the job does all its work.

    .venv/bin/python bench/fit_job.py cdnow
    .venv/bin/python bench/fit_job.py synthetic --customers 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import redis
from _cdnow import CALIBRATION_END_DAY, load

from ltv import gammagamma, mbgnbd
from state import envelope
from state.codec import encode_state
from state.customer import CustomerState, StateConfig, apply_purchase, new_state
from state.events import Purchase
from state.fx import load_fx_table
from state.model_store import model_key
from state.store.config import StoreConfig
from state.store.keys import KeyLayout
from streams.fit import TABLE, run_fit
from streams.settings import Settings

ORIGIN = datetime(1997, 1, 1, tzinfo=UTC)
CDNOW_AS_OF = ORIGIN + timedelta(days=CALIBRATION_END_DAY)
SYNTHETIC_AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
TRUTH = mbgnbd.MBGNBDParams(r=0.525, alpha=6.183, a=0.891, b=1.614).rescale_time(7.0)
SPEND = gammagamma.GammaGammaParams(p=6.25, q=3.74, gamma=15.44)
CENT = Decimal("0.01")
BATCH = 10_000
#: Channel, share of customers, factor on alpha (a larger alpha buys less often).
CHANNELS = (("search", 0.5, 1.0), ("referral", 0.3, 0.6), ("social", 0.2, 1.6))


def cdnow_states() -> Iterator[CustomerState]:
    """CDNOW calibration rows applied as purchases at midnight UTC of their day."""
    ids, days, values = load()
    cfg = StateConfig(fx=load_fx_table(base="USD"))
    states: dict[int, CustomerState] = {}
    for row, (customer, day, amount) in enumerate(
        zip(ids.tolist(), days.tolist(), values.tolist(), strict=True)
    ):
        if day > CALIBRATION_END_DAY:
            continue
        event = Purchase.model_validate(
            {
                "event_id": f"r{row}",
                "order_id": f"r{row}",
                "customer_id": str(customer),
                "occurred_at": (ORIGIN + timedelta(days=day)).isoformat(),
                "amount": f"{amount:.2f}",
                "currency": "USD",
            }
        )
        state = states.get(customer) or new_state(str(customer))
        states[customer] = apply_purchase(state, event, cfg).state
    yield from states.values()


def _money(value: float) -> Decimal:
    return Decimal(f"{value:.2f}")


def synthetic_states(n: int, seed: int = 20050101) -> Iterator[CustomerState]:
    """Customers with x repeat days after the first, the last one t_x days later."""
    rng = np.random.default_rng(seed)
    T = rng.integers(1, 731, n)
    channel = rng.choice(len(CHANNELS), n, p=[share for _, share, _ in CHANNELS])
    x, t_x = np.zeros(n), np.zeros(n)
    for c, (_, _, factor) in enumerate(CHANNELS):
        members = channel == c
        truth = replace(TRUTH, alpha=TRUTH.alpha * factor)
        x[members], t_x[members] = mbgnbd.simulate(truth, T[members].astype(np.float64), rng)
    nu = rng.gamma(SPEND.q, 1.0 / SPEND.gamma, n)
    first_spend = rng.gamma(SPEND.p, 1.0 / nu)
    # The sum of x Gamma(p, nu) day values is Gamma(p x, nu).
    repeat_spend = rng.gamma(SPEND.p * np.maximum(x, 1.0), 1.0 / nu)
    cfg = StateConfig(fx=load_fx_table(base="USD"))
    for i in range(n):
        xi, Ti = int(x[i]), int(T[i])
        first = SYNTHETIC_AS_OF - timedelta(days=Ti)
        # Given x purchases with the last at t_x, a Poisson process puts the
        # others uniformly before it: distinct whole days, so x stays x.
        last = min(max(round(float(t_x[i])), xi), Ti)
        days = sorted((rng.choice(last - 1, xi - 1, replace=False) + 1).tolist()) if xi > 1 else []
        orders = [(first, _money(first_spend[i]))]
        if xi:
            share = _money(repeat_spend[i] / xi)
            orders += [(first + timedelta(days=day), share) for day in [*days, last]]
        state = new_state(f"s{i}")
        for k, (at, amount) in enumerate(orders):
            event = Purchase.model_construct(
                event_id=f"s{i}-{k}",
                order_id=f"s{i}-{k}",
                customer_id=state.customer_id,
                occurred_at=at,
                amount=amount,
                currency="USD",
                margin_rate=None,
                channel=CHANNELS[channel[i]][0],
                items=(),
                subscription=None,
            )
            state = apply_purchase(state, event, cfg).state
        yield state


def write_states(url: str, app_id: str, partitions: int, source: str, n: int) -> None:
    """Child process: encode and HSET the states, spread over the partitions."""
    client = redis.Redis.from_url(url)
    layout = KeyLayout(app_id, TABLE)
    states = cdnow_states() if source == "cdnow" else synthetic_states(n)
    pipe = client.pipeline(transaction=False)
    for i, state in enumerate(states, start=1):
        pipe.hset(
            layout.data_key(hash(state.customer_id) % partitions),
            state.customer_id,
            envelope.encode(encode_state(state)),
        )
        if i % BATCH == 0:
            pipe.execute()
    pipe.execute()


def cleanup(url: str, app_id: str, partitions: int) -> None:
    client = redis.Redis.from_url(url)
    layout = KeyLayout(app_id, TABLE)
    client.delete(model_key(app_id), *(layout.data_key(p) for p in range(partitions)))


async def run_job(settings: Settings, as_of: datetime) -> None:
    client = StoreConfig.from_url(settings.redis_url).async_client()
    try:
        started = time.perf_counter()
        outcome = await run_fit(client, settings, as_of)
        elapsed = time.perf_counter() - started
    finally:
        await client.aclose()
    record = outcome.record
    assert record is not None and outcome.error is None, outcome.error
    print(
        f"job: {record.n_customers} customers fitted in {elapsed:.2f} s (version {record.version})"
    )
    for name, fitted in record.models.items():
        params = ", ".join(f"{k}={v:.4g}" for k, v in fitted.params.items())
        print(f"  {name}: {params} (converged {fitted.converged}, n={fitted.n:.0f})")
    selection = record.selection
    if selection is not None:
        print(f"  orders model: {record.orders_model} ({selection.reason or 'holdout'})")
        for name, score in selection.scores.items():
            print(f"    {name}: {score.as_json()}")
        if selection.covariates is not None:
            print(f"  covariates: {selection.covariates.as_json()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", choices=["cdnow", "synthetic"])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    app_id = f"bench-fit-{uuid.uuid4().hex[:8]}"
    settings = Settings(app_id=app_id, partitions=args.partitions, redis_url=args.redis)
    try:
        started = time.perf_counter()
        writer = multiprocessing.Process(
            target=write_states,
            args=(args.redis, app_id, args.partitions, args.source, args.customers),
        )
        writer.start()
        writer.join()
        assert writer.exitcode == 0, f"writer failed with {writer.exitcode}"
        print(f"wrote states in {time.perf_counter() - started:.1f} s (app id {app_id})")
        as_of = CDNOW_AS_OF if args.source == "cdnow" else SYNTHETIC_AS_OF
        asyncio.run(run_job(settings, as_of))
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of the job process: {peak_mib:.0f} MiB")
    finally:
        cleanup(args.redis, app_id, args.partitions)


if __name__ == "__main__":
    main()
