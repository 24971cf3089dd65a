"""The fitted model in Redis: one JSON document per app id (docs/http.md, GET /model).

Key ``ltv:<app_id>:model`` (app id percent-encoded, as in the table keys)
holds the body of ``GET /model`` plus the bookkeeping of failed fits. JSON,
never pickle: the document is read by every worker and by operators, and
stored bytes must not be able to execute code.

A failed fit leaves ``version`` and the parameters alone and only records
``last_error``/``failed_at``, so workers keep valuing with the last good
model; the version is what workers poll to decide whether to reload.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson

from ltv.acquisition import OrdersCovariates
from ltv.calibration import Calibration
from ltv.gammagamma import GammaGammaParams
from ltv.holdout import HoldoutScore
from ltv.orders import FAMILIES
from ltv.rfm import RfmEdges
from ltv.sbg import SBGParams
from ltv.valuation import ModelSnapshot

TIME_UNIT = "day"
# The valuation's fallback gap until a fit has measured one.
DEFAULT_GAP_DAYS = 90.0
#: Models named ``sbg|<interval>`` or ``sbg|<interval>|<plan>`` are the sBG
#: retention fits of subscriptions (``ltv.valuation.retention_key``); their
#: parameters have no time unit: they count billing periods.
RETENTION_PREFIX = "sbg|"


def model_key(app_id: str) -> str:
    """The Redis key of ``app_id``'s model document."""
    return f"ltv:{quote(app_id, safe='')}:model"


def lock_key(app_id: str) -> str:
    """The Redis key that lets one fit at a time run for ``app_id``."""
    return f"{model_key(app_id)}:lock"


@dataclass(frozen=True, slots=True)
class FittedModel:
    """One model's parameters with how the optimiser ended."""

    params: dict[str, float]
    log_likelihood: float
    converged: bool
    iterations: int
    n: float

    def as_json(self) -> dict[str, Any]:
        return {
            **self.params,
            "log_likelihood": self.log_likelihood,
            "converged": self.converged,
            "iterations": self.iterations,
            "n": self.n,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FittedModel:
        meta = ("log_likelihood", "converged", "iterations", "n")
        return cls(
            params={k: float(v) for k, v in doc.items() if k not in meta},
            log_likelihood=float(doc["log_likelihood"]),
            converged=bool(doc["converged"]),
            iterations=int(doc["iterations"]),
            n=float(doc["n"]),
        )


@dataclass(frozen=True, slots=True)
class CovariateChoice:
    """Whether the chosen family values with first-order covariates, and why.

    ``plain`` and ``scored`` are the holdout scores without and with
    covariates on the same (sampled) calibration customers.
    """

    family: str
    used: bool = False
    reason: str | None = None
    customers: int = 0
    columns: tuple[str, ...] = ()
    p_value: float | None = None
    plain: HoldoutScore | None = None
    scored: HoldoutScore | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "used": self.used,
            "reason": self.reason,
            "customers": self.customers,
            "columns": list(self.columns),
            "likelihood_ratio_p": self.p_value,
            "plain": None if self.plain is None else self.plain.as_json(),
            "covariates": None if self.scored is None else self.scored.as_json(),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CovariateChoice:
        plain, scored = doc.get("plain"), doc.get("covariates")
        return cls(
            family=doc["family"],
            used=bool(doc.get("used", False)),
            reason=doc.get("reason"),
            customers=int(doc.get("customers", 0)),
            columns=tuple(doc.get("columns", ())),
            p_value=doc.get("likelihood_ratio_p"),
            plain=None if plain is None else HoldoutScore.from_json(plain),
            scored=None if scored is None else HoldoutScore.from_json(scored),
        )


@dataclass(frozen=True, slots=True)
class Selection:
    """Which orders model values customers, and the holdout scores it was chosen by."""

    chosen: str
    split_at: datetime | None = None
    holdout_days: int = 0
    #: Customers who had bought before the split (the scored population).
    customers: int = 0
    scores: dict[str, HoldoutScore] = field(default_factory=dict)
    #: Why no holdout chose (None: it did).
    reason: str | None = None
    covariates: CovariateChoice | None = None

    @property
    def by_holdout(self) -> bool:
        """Whether the holdout chose (else the default family values, for ``reason``)."""
        return self.reason is None

    def as_json(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "by": "holdout_log_likelihood" if self.by_holdout else "default",
            "reason": self.reason,
            "split_at": _time(self.split_at),
            "holdout_days": self.holdout_days,
            "customers": self.customers,
            "scores": {name: s.as_json() for name, s in self.scores.items()},
            "covariates": None if self.covariates is None else self.covariates.as_json(),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Selection:
        return cls(
            chosen=doc["chosen"],
            split_at=_parse_time(doc.get("split_at")),
            holdout_days=int(doc.get("holdout_days", 0)),
            customers=int(doc.get("customers", 0)),
            scores={k: HoldoutScore.from_json(v) for k, v in doc.get("scores", {}).items()},
            reason=doc.get("reason"),
            covariates=None
            if doc.get("covariates") is None
            else CovariateChoice.from_json(doc["covariates"]),
        )


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """The stored document. ``version`` None: no fit has succeeded yet."""

    version: str | None = None
    fitted_at: datetime | None = None
    as_of: datetime | None = None
    n_customers: int = 0
    models: dict[str, FittedModel] = field(default_factory=dict)
    rfm_edges: RfmEdges | None = None
    subscription_monthly_churn: float | None = None
    population_gap_days: float | None = None
    #: Customers per churn-risk level and per RFM segment at fit time.
    population: dict[str, dict[str, int]] = field(default_factory=dict)
    last_error: str | None = None
    failed_at: datetime | None = None
    #: Attempts failed in a row since the last success (spaces the retries).
    failures: int = 0
    #: The family in ``models`` that values customers (``ltv.orders.FAMILIES``).
    orders_model: str = "mbgnbd"
    selection: Selection | None = None
    #: The orders model's covariate form, when the fit found it predicts better.
    covariates: OrdersCovariates | None = None
    #: The fits' predictions of repeat purchase days and how they came out.
    calibration: Calibration = field(default_factory=Calibration)

    def as_json(self) -> dict[str, Any]:
        """The ``GET /model`` body (docs/http.md) plus the failure bookkeeping."""
        edges = self.rfm_edges
        return {
            "version": self.version,
            "fitted_at": _time(self.fitted_at),
            "as_of": _time(self.as_of),
            "time_unit": TIME_UNIT,
            "n_customers": self.n_customers,
            "models": {name: m.as_json() for name, m in self.models.items()},
            "rfm_edges": None if edges is None else edges.as_json(),
            "subscription_monthly_churn": self.subscription_monthly_churn,
            "population_gap_days": self.population_gap_days,
            "population": self.population,
            "last_error": self.last_error,
            "failed_at": _time(self.failed_at),
            "failures": self.failures,
            "orders_model": self.orders_model,
            "selection": None if self.selection is None else self.selection.as_json(),
            "covariates": None if self.covariates is None else self.covariates.as_json(),
            "calibration": self.calibration.as_json(),
        }

    def dumps(self) -> bytes:
        return orjson.dumps(self.as_json())

    @classmethod
    def loads(cls, raw: bytes) -> ModelRecord:
        doc = orjson.loads(raw)
        edges = doc.get("rfm_edges")
        return cls(
            version=doc.get("version"),
            fitted_at=_parse_time(doc.get("fitted_at")),
            as_of=_parse_time(doc.get("as_of")),
            n_customers=int(doc.get("n_customers", 0)),
            models={k: FittedModel.from_json(v) for k, v in doc.get("models", {}).items()},
            rfm_edges=None if edges is None else RfmEdges.from_json(edges),
            subscription_monthly_churn=doc.get("subscription_monthly_churn"),
            population_gap_days=doc.get("population_gap_days"),
            population=doc.get("population") or {},
            last_error=doc.get("last_error"),
            failed_at=_parse_time(doc.get("failed_at")),
            failures=int(doc.get("failures", 0)),
            # Documents stored before the choice valued with MBG/NBD.
            orders_model=doc.get("orders_model", "mbgnbd"),
            selection=None
            if doc.get("selection") is None
            else Selection.from_json(doc["selection"]),
            covariates=None
            if doc.get("covariates") is None
            else OrdersCovariates.from_json(doc["covariates"]),
            calibration=Calibration.from_json(doc.get("calibration") or {}),
        )

    def with_version(self) -> ModelRecord:
        """Stamp a version: fit time plus a short hash of everything fitted."""
        assert self.fitted_at is not None
        body = replace(self, version=None, last_error=None, failed_at=None, failures=0).dumps()
        digest = hashlib.sha256(body).hexdigest()[:8]
        return replace(self, version=f"{self.fitted_at:%Y%m%dT%H%M%SZ}-{digest}")

    def failed(self, error: str, at: datetime) -> ModelRecord:
        """The same parameters, with the failure recorded."""
        return replace(self, last_error=error[:1000], failed_at=at, failures=self.failures + 1)

    def snapshot(self) -> ModelSnapshot | None:
        """What the processor values with; None before the first successful fit."""
        family = FAMILIES.get(self.orders_model)
        if (
            self.version is None
            or family is None
            or self.orders_model not in self.models
            or "gammagamma" not in self.models
        ):
            return None
        orders, spend = self.models[self.orders_model].params, self.models["gammagamma"].params
        return ModelSnapshot(
            version=self.version,
            orders=family.params(orders),
            spend=GammaGammaParams(spend["p"], spend["q"], spend["gamma"]),
            name=f"{self.orders_model}{'+covariates' if self.covariates else ''}+gammagamma",
            covariates=self.covariates,
            rfm=self.rfm_edges,
            subscription_monthly_churn=self.subscription_monthly_churn,
            population_gap_days=self.population_gap_days or DEFAULT_GAP_DAYS,
            retention={
                name.removeprefix(RETENTION_PREFIX): SBGParams(m.params["gamma"], m.params["delta"])
                for name, m in self.models.items()
                if name.startswith(RETENTION_PREFIX)
            },
        )


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


async def load_model(client: Any, app_id: str) -> ModelRecord | None:
    """The stored document, or None when nothing was ever stored."""
    raw = await client.get(model_key(app_id))
    return None if raw is None else ModelRecord.loads(raw)


async def save_model(client: Any, app_id: str, record: ModelRecord) -> None:
    """Replace the stored document (call under the fit lock)."""
    await client.set(model_key(app_id), record.dumps())


# Delete the lock only when it still holds our token: a fit that outlived the
# TTL must not release the lock a later fit has taken since.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


async def acquire_lock(client: Any, app_id: str, token: str, ttl_ms: int) -> bool:
    """SET NX PX: True when this caller may fit now."""
    return bool(await client.set(lock_key(app_id), token, nx=True, px=ttl_ms))


async def release_lock(client: Any, app_id: str, token: str) -> None:
    await client.eval(_RELEASE, 1, lock_key(app_id), token)
