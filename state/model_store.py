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

from ltv.gammagamma import GammaGammaParams
from ltv.mbgnbd import MBGNBDParams
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
            "rfm_edges": None
            if edges is None
            else {
                "recency_days": list(edges.recency),
                "frequency": list(edges.frequency),
                "monetary": list(edges.monetary),
            },
            "subscription_monthly_churn": self.subscription_monthly_churn,
            "population_gap_days": self.population_gap_days,
            "population": self.population,
            "last_error": self.last_error,
            "failed_at": _time(self.failed_at),
            "failures": self.failures,
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
            rfm_edges=None
            if edges is None
            else RfmEdges(
                recency=_edges(edges["recency_days"]),
                frequency=_edges(edges["frequency"]),
                monetary=_edges(edges["monetary"]),
            ),
            subscription_monthly_churn=doc.get("subscription_monthly_churn"),
            population_gap_days=doc.get("population_gap_days"),
            population=doc.get("population") or {},
            last_error=doc.get("last_error"),
            failed_at=_parse_time(doc.get("failed_at")),
            failures=int(doc.get("failures", 0)),
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
        if self.version is None or "mbgnbd" not in self.models or "gammagamma" not in self.models:
            return None
        orders, spend = self.models["mbgnbd"].params, self.models["gammagamma"].params
        return ModelSnapshot(
            version=self.version,
            orders=MBGNBDParams(orders["r"], orders["alpha"], orders["a"], orders["b"]),
            spend=GammaGammaParams(spend["p"], spend["q"], spend["gamma"]),
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


def _edges(values: list[float]) -> tuple[float, float, float, float]:
    a, b, c, d = (float(v) for v in values)
    return a, b, c, d


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
