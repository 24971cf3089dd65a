"""CDNOW end to end: ltv backfill -> Kafka -> worker -> Redis -> ltv fit -> GET /model.

The 4 960 calibration transactions of the CDNOW sample (lifetimes' data file;
several per customer per day, 8 of them zero-value) go through the real
pipeline, and the fit of the stored states must give the published figures.
Afterwards a new purchase is valued with the fitted model.
"""

from __future__ import annotations

import importlib.util
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from pipeline_harness import (
    REDIS_URL,
    Deployment,
    WorkerProcess,
    consume,
    event,
    produce,
    require_servers,
    wait_until,
)

from state.model_store import lock_key
from state.store.config import StoreConfig
from streams.fit import FIT_BUSY, fit_in_child

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TOKEN = "test-token-4f1c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CALIBRATION_END = "19970930"
# Published CDNOW figures (docs/valuation.md); alpha per week, the fit is in days.
PUBLISHED = {
    "bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
    "mbgnbd": {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614},
    "gammagamma": {"p": 6.25, "q": 3.74, "gamma": 15.44},
}


@pytest.fixture
async def deploy(tmp_path: Path) -> AsyncIterator[Callable[[float], Deployment]]:
    """Deployments replaying in event time with a given LTV_FIT_INTERVAL, removed afterwards."""
    require_servers()
    made: list[Deployment] = []

    def make(fit_interval: float) -> Deployment:
        env = {
            "LTV_CLOCK": "event",
            "LTV_FIT_INTERVAL": str(fit_interval),
            "LTV_API_TOKEN": TOKEN,
        }
        made.append(Deployment(tmp_path, extra_env=env))
        return made[-1]

    try:
        yield make
    finally:
        for dep in made:
            await dep.cleanup()


def cdnow_sample() -> Path:
    """The data file inside the lifetimes package (its modules are never imported)."""
    spec = importlib.util.find_spec("lifetimes")
    assert spec is not None and spec.submodule_search_locations, "lifetimes is a test dependency"
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "CDNOW_sample.txt"


def write_calibration_csv(path: Path) -> int:
    """The calibration rows as backfill CSV (one order per row); returns the row count."""
    rows = 0
    with path.open("w") as out:
        out.write("customer_id,order_id,date,amount\n")
        for n, line in enumerate(cdnow_sample().read_text().splitlines()):
            _, customer, date, _, amount = line.split()
            if date > CALIBRATION_END:
                continue
            out.write(f"{int(customer)},cd-{n},{date[:4]}-{date[4:6]}-{date[6:]},{amount}\n")
            rows += 1
        out.write("9999,cd-bad,1997-13-01,1.00\n")  # a bad line: reported, not sent
    return rows


def metric(worker: WorkerProcess, name: str, labels: str = "") -> float:
    status, body = worker.get("/metrics")
    assert status == 200
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+]+)"
    found = re.search(pattern, body.decode())
    return float(found.group(1)) if found else 0.0


def model(worker: WorkerProcess) -> dict[str, object]:
    status, body = worker.get("/model", AUTH)
    assert status == 200, body
    doc: dict[str, object] = orjson.loads(body)
    return doc


def backfill_cdnow(dep: Deployment, worker: WorkerProcess, tmp_path: Path) -> int:
    """``ltv backfill`` the calibration CSV; return once the worker stored every order."""
    csv_path = tmp_path / "cdnow.csv"
    rows = write_calibration_csv(csv_path)
    assert rows == 4960
    done = dep.ltv(worker, "backfill", str(csv_path))
    assert done.returncode == 1, done.stderr  # 1: some lines were refused
    assert f"cdnow.csv:{rows + 2}: schema" in done.stderr
    assert f"{rows} events sent" in done.stdout and "1 bad lines not sent" in done.stdout

    applied = 'event_type="purchase",outcome="applied"'

    def stored() -> bool:
        ready = orjson.loads(worker.get("/readyz")[1])
        return (
            metric(worker, "ltv_events_processed_total", applied) == rows
            and ready["checks"]["store_dirty_keys"] == 0
        )

    wait_until(stored, 90, lambda: f"backfill not applied and stored:\n{worker.tail()}")
    return rows


async def test_cdnow_backfill_fit_reproduces_published_parameters(
    deploy: Callable[[float], Deployment], tmp_path: Path
) -> None:
    deployment = deploy(86400)  # no periodic fit gets in the way
    worker = deployment.start_worker()
    assert worker.get("/model")[0] == 401
    assert worker.get("/model", {"Authorization": "Bearer wrong"})[0] == 401
    before = model(worker)
    assert before["version"] is None and before["models"] == {}

    rows = backfill_cdnow(deployment, worker, tmp_path)

    fitted = deployment.ltv(worker, "fit", "--as-of", "1997-09-30")
    assert fitted.returncode == 0, fitted.stderr
    print(fitted.stdout)  # the fitted parameters, for the record (pytest -s)
    version = re.search(r"version (\S+),", fitted.stdout)
    assert version is not None, fitted.stdout
    wait_until(
        lambda: model(worker)["version"] == version.group(1),
        15,
        lambda: f"worker did not pick up {version.group(1)}: {model(worker)}",
    )
    body = model(worker)
    assert body["n_customers"] == 2357 and body["time_unit"] == "day"
    assert body["as_of"] == "1997-09-30T00:00:00Z"
    models = body["models"]
    assert isinstance(models, dict)
    for name, published in PUBLISHED.items():
        for param, value in published.items():
            got = models[name][param] / (7.0 if param == "alpha" else 1.0)
            places = 3 if name != "gammagamma" else 2
            assert got == pytest.approx(value, abs=0.5 * 10**-places), (name, param, got)
    assert models["bgnbd"]["log_likelihood"] is not None and models["gammagamma"]["n"] == 946
    # The orders model that values was chosen on the last 90 days held out.
    selection = body["selection"]
    assert selection["chosen"] == body["orders_model"] and selection["reason"] is None
    assert set(selection["scores"]) == {"bgnbd", "mbgnbd", "paretonbd"}
    name = f"{body['orders_model']}{'+covariates' if body['covariates'] else ''}+gammagamma"
    # The exposition sorts the labels by name.
    labels = f'chosen_by="holdout",model="{name}",version="{version.group(1)}"'
    info = [
        line for line in worker.get("/metrics")[1].decode().splitlines() if "model_info{" in line
    ]
    assert metric(worker, "ltv_model_info", labels) == 1, (labels, info)

    # A new purchase of a CDNOW customer is valued with the fitted model.
    purchase = {
        "event_id": "after-fit",
        "order_id": "after-fit",
        "customer_id": "4",
        "occurred_at": "1997-10-05T00:00:00Z",
        "amount": "20.00",
        "currency": "USD",
    }
    await produce([event(deployment.purchases, purchase)])
    updates = await consume(deployment.updates, rows + 1, timeout=60)
    (update,) = [u for u in updates if u["cause"]["event_id"] == "after-fit"]
    assert update["model"] == {"name": name, "version": version.group(1)}
    assert update["p_alive"] is not None and 0 < update["p_alive"] <= 1
    assert update["predicted_ltv"] is not None and float(update["predicted_ltv"]) > 0


async def test_worker_fits_periodically_and_switches_model(
    deploy: Callable[[float], Deployment], tmp_path: Path
) -> None:
    """Without a call of ``ltv fit``: the worker's timer runs one in a child process and reloads."""
    deployment = deploy(2)
    worker = deployment.start_worker()
    rows = backfill_cdnow(deployment, worker, tmp_path)

    def fitted_on_everyone() -> bool:
        body = model(worker)
        return body["version"] is not None and body["n_customers"] == 2357

    wait_until(fitted_on_everyone, 60, lambda: f"no periodic fit: {model(worker)}\n{worker.tail()}")
    body = model(worker)
    assert body["as_of"] == "1997-09-30T00:00:00Z"  # the event-time watermark
    # The child process (``ltv fit``) printed its summary into the worker's output.
    assert f"ltv fit: version {body['version']}, 2357 customers" in worker.tail(10_000)
    models = body["models"]
    assert isinstance(models, dict)
    assert models["mbgnbd"]["r"] == pytest.approx(0.525, abs=5e-4)
    assert (
        metric(worker, "ltv_events_processed_total", 'event_type="purchase",outcome="applied"')
        == rows
    )


async def test_a_fit_process_reports_a_held_lock_and_is_killed_past_its_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's fit runs as ``ltv fit`` in a child: busy is not a failure, and
    a child past its time is killed rather than left running."""
    require_servers()
    app_id = f"fit-child-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("LTV_APP_ID", app_id)
    monkeypatch.setenv("LTV_REDIS_URL", REDIS_URL)
    client = StoreConfig.from_url(REDIS_URL).async_client()
    await client.set(lock_key(app_id), "another worker", px=120_000)
    try:
        assert await fit_in_child(datetime.now(UTC), 120) == FIT_BUSY
        assert await fit_in_child(datetime.now(UTC), 0.05) is None
    finally:
        await client.delete(lock_key(app_id))
        await client.aclose()
