"""Time-invariant covariates for BG/NBD, MBG/NBD and Pareto/NBD.

Fader & Hardie 2007, "Incorporating time-invariant covariates into the
Pareto/NBD and BG/NBD models" (brucehardie.com note 019), let the scale
parameters of the mixing distributions depend on a customer's covariate row
``z_i`` while the shape parameters stay shared. With ``base`` the parameters
of the reference customer (z = 0) this module uses, per customer i:

* Pareto/NBD (r, alpha, s, beta):
  ``alpha_i = alpha0 exp(-g_p . z_i)`` (purchase), ``beta_i = beta0 exp(-g_d . z_i)``
  (dropout); r and s shared.
* BG/NBD and MBG/NBD (r, alpha, a, b):
  ``alpha_i = alpha0 exp(-g_p . z_i)``, ``a_i = a0 exp(g_a . z_i)``,
  ``b_i = b0 exp(g_b . z_i)``; r shared.

Signs: alpha and beta are gamma *rates*, so the minus sign makes a positive
g_p raise the mean purchase rate r/alpha_i (and a positive g_d the mean dropout
rate s/beta_i) by the factor exp(g . z). For a and b there is no such reading
and they take the plain exponential; the mean dropout probability
a_i/(a_i+b_i) rises with g_a - g_b. These are the note's signs as recalled
when this was written (the note's text was not at hand to re-check); any
other sign convention is the same model with the effects negated.

Why per-customer parameters are enough: given z_i, customer i is an ordinary
BG/NBD, MBG/NBD or Pareto/NBD customer with the parameters above, so the
likelihood, P(alive) and conditional expected orders are the plain models'
closed forms evaluated with those parameters; this module reuses
:mod:`ltv.betageo` and :mod:`ltv.paretonbd` and contains no formula of its
own. z is a row of a 0/1 design matrix (one-hot dummies of categorical
covariates, the reference level dropped, see :class:`Design`), so a
population has only a handful of distinct rows: every function groups
customers by distinct row and calls the plain vectorised function once per
group, and a fit costs (#distinct rows) plain evaluations per likelihood.
Nothing here does I/O; models travel as plain JSON (:meth:`CovariateModel.as_json`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self, cast

import numpy as np
import numpy.typing as npt
from scipy.stats import chi2

from ltv import betageo, paretonbd
from ltv.fitting import (
    ArrayLike,
    FitResult,
    FloatArray,
    as_float_array,
    minimize_negative_log_likelihood,
    prepare_weights,
    validate_summaries,
)
from ltv.orders import FAMILIES, OrdersParams, family_of
from ltv.paretonbd import ParetoNBDParams

Family = Literal["bgnbd", "mbgnbd", "paretonbd"]
PlainParams = OrdersParams
Index = npt.NDArray[np.intp]

# Covariate effects on the dropout process: Pareto/NBD (g_d,), BG family (g_a, g_b).
_DROPOUT_EFFECTS: dict[str, int] = {"bgnbd": 2, "mbgnbd": 2, "paretonbd": 1}


@dataclass(frozen=True, slots=True)
class Design:
    """How raw categorical covariate values become a 0/1 row of the design matrix.

    Stored with the model (JSON) so that the stream turns a customer's values
    into exactly the columns the model was fitted with. Each covariate has one
    column per kept non-reference level; the reference level, and any value
    that is not a kept level (a folded rare level, an unseen one, None), is
    the all-zero block, i.e. the base parameters.
    """

    names: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.levels):
            raise ValueError("one tuple of levels per covariate name")
        for name, kept in zip(self.names, self.levels, strict=True):
            if len(set(kept)) != len(kept):
                raise ValueError(f"duplicate level of covariate {name!r}")

    def columns(self) -> tuple[str, ...]:
        """Column names ``name=level`` in design-matrix order."""
        return tuple(
            f"{name}={level}"
            for name, kept in zip(self.names, self.levels, strict=True)
            for level in kept
        )

    def row(self, values: Sequence[str | None]) -> tuple[float, ...]:
        """The 0/1 row of one customer whose covariate values are ``values`` (one per name)."""
        if len(values) != len(self.names):
            raise ValueError(f"expected {len(self.names)} covariate values, got {len(values)}")
        return tuple(
            1.0 if value == level else 0.0
            for value, kept in zip(values, self.levels, strict=True)
            for level in kept
        )

    def matrix(self, values: Sequence[Sequence[str | None]]) -> FloatArray:
        """Design matrix, one :meth:`row` per customer, shape (customers, columns)."""
        width = sum(len(kept) for kept in self.levels)
        rows = [self.row(v) for v in values]
        return np.array(rows, dtype=np.float64).reshape(len(rows), width)

    def as_json(self) -> dict[str, Any]:
        return {"names": list(self.names), "levels": [list(kept) for kept in self.levels]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            tuple(str(n) for n in data["names"]),
            tuple(tuple(str(level) for level in kept) for kept in data["levels"]),
        )


def design_of(
    names: Sequence[str],
    values: Sequence[Sequence[str | None]],
    *,
    min_share: float = 0.01,
    max_levels: int = 12,
) -> Design:
    """Choose each covariate's reference and kept levels from the customers' values.

    The reference is the most frequent level, so that the base parameters
    describe the largest group and every gamma contrasts a group with it.
    A level held by fewer than ``min_share`` of the customers folds into the
    reference (its gamma would be estimated from too few customers to mean
    anything), as do all but the ``max_levels`` most frequent levels (the
    reference included), which bounds the number of parameters. Ties in
    frequency are broken by level name so that the design is reproducible.
    """
    if max_levels < 1:
        raise ValueError("max_levels must be at least 1")
    total = len(values)
    levels: list[tuple[str, ...]] = []
    for j, _ in enumerate(names):
        counts: Counter[str] = Counter()
        for row in values:
            value = row[j]
            if value is not None:
                counts[value] += 1
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        kept = tuple(
            level
            for level, count in ranked[1:max_levels]
            if total > 0 and count / total >= min_share
        )
        levels.append(kept)
    return Design(tuple(names), tuple(levels))


#: Two columns whose customers differ on at most this share of the smaller
#: one's count the same customers, for ``without_aliases``.
ALIAS_SHARE = 0.05


def without_aliases(design: Design, Z: ArrayLike, share: float = ALIAS_SHARE) -> Design:
    """``design`` without the levels that pick out (almost) the customers of an
    earlier column, such as a first category that only subscriptions have
    next to "first order was a subscription".

    Two such columns carry one effect between them: the likelihood is flat
    along their difference, the optimiser wanders along that ridge without
    converging, and neither effect means anything. The later level folds into
    its covariate's reference instead.
    """
    Za = as_float_array(Z).astype(bool)
    counts = Za.sum(axis=0)
    kept: list[int] = []
    for j in range(Za.shape[1]):
        alias = any(
            np.count_nonzero(Za[:, i] != Za[:, j]) <= share * min(counts[i], counts[j])
            for i in kept
        )
        if not alias:
            kept.append(j)
    columns = set(kept)
    levels: list[tuple[str, ...]] = []
    position = 0
    for kept_levels in design.levels:
        levels.append(
            tuple(level for k, level in enumerate(kept_levels) if position + k in columns)
        )
        position += len(kept_levels)
    return Design(design.names, tuple(levels))


@dataclass(frozen=True, slots=True)
class CovariateModel:
    """A fitted model: the reference customer's parameters and the covariate effects.

    ``purchase`` is g_p per design column; ``dropout`` is (g_d,) for
    Pareto/NBD and (g_a, g_b) for the BG family, each per column (module
    docstring for the parametrisation).
    """

    family: Family
    base: PlainParams
    design: Design
    purchase: tuple[float, ...]
    dropout: tuple[tuple[float, ...], ...]
    # params_for is called per event by the stream and there are few distinct rows.
    _memo: dict[tuple[float, ...], PlainParams] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if type(self.base) is not FAMILIES[self.family].params_type:
            raise ValueError(f"{self.family} needs base parameters of its own type")
        width = len(self.design.columns())
        if len(self.purchase) != width:
            raise ValueError("one purchase effect per design column")
        if len(self.dropout) != _DROPOUT_EFFECTS[self.family]:
            raise ValueError(f"{self.family} has {_DROPOUT_EFFECTS[self.family]} dropout effects")
        if any(len(effects) != width for effects in self.dropout):
            raise ValueError("one dropout effect per design column")
        if not all(math.isfinite(g) for g in self.purchase + sum(self.dropout, ())):
            raise ValueError("covariate effects must be finite")

    @classmethod
    def plain(cls, family: Family, base: PlainParams, design: Design) -> Self:
        """The plain model in covariate form: every effect 0, every customer gets ``base``."""
        zeros = (0.0,) * len(design.columns())
        return cls(family, base, design, zeros, (zeros,) * _DROPOUT_EFFECTS[family])

    def params_for(self, z: Sequence[float]) -> PlainParams:
        """The plain-model parameters of a customer with design row ``z``."""
        key = tuple(float(v) for v in z)
        cached = self._memo.get(key)
        if cached is not None:
            return cached
        if len(key) != len(self.purchase):
            raise ValueError(f"expected {len(self.purchase)} covariate columns, got {len(key)}")
        row = self.scaled(np.array([key]))
        params = type(self.base)(*(float(np.asarray(v).reshape(-1)[0]) for v in row))
        self._memo[key] = params
        return params

    def scaled(self, Z: FloatArray) -> tuple[float, FloatArray, float | FloatArray, FloatArray]:
        """Each customer's parameters, one row of ``Z`` each, in the fields' order:
        the shapes (r, and s for Pareto/NBD) shared, the scales per customer."""
        base = self.base
        purchase = base.alpha * np.exp(-Z @ np.asarray(self.purchase))
        if isinstance(base, ParetoNBDParams):
            (g_d,) = self.dropout
            return base.r, purchase, base.s, base.beta * np.exp(-Z @ np.asarray(g_d))
        g_a, g_b = self.dropout
        return (
            base.r,
            purchase,
            base.a * np.exp(Z @ np.asarray(g_a)),
            base.b * np.exp(Z @ np.asarray(g_b)),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "base": self.base.as_dict(),
            "design": self.design.as_json(),
            "purchase": list(self.purchase),
            "dropout": [list(effects) for effects in self.dropout],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        family = str(data["family"])
        if family not in FAMILIES:
            raise ValueError(f"unknown model family {family!r}")
        base = FAMILIES[family].params(data["base"])
        return cls(
            cast(Family, family),
            base,
            Design.from_json(data["design"]),
            tuple(float(g) for g in data["purchase"]),
            tuple(tuple(float(g) for g in effects) for effects in data["dropout"]),
        )

    @property
    def effects(self) -> int:
        """Number of covariate effects (the degrees of freedom against the plain model)."""
        return len(self.purchase) * (1 + len(self.dropout))


def _groups(Z: FloatArray, n: int) -> Iterator[tuple[tuple[float, ...], Index]]:
    """(distinct row, indices of the customers having it) for a design matrix."""
    if Z.ndim != 2 or Z.shape[0] != n:
        raise ValueError(f"Z must have one row per customer, shape ({n}, columns)")
    rows, inverse = np.unique(Z, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    for g, row in enumerate(rows):
        yield tuple(float(v) for v in row), np.flatnonzero(inverse == g)


def _check_width(model: CovariateModel, Z: FloatArray) -> None:
    if Z.ndim != 2 or Z.shape[1] != len(model.purchase):
        raise ValueError(f"Z must have {len(model.purchase)} columns")


def _per_group(
    model: CovariateModel,
    Z: ArrayLike,
    evaluate: Callable[[PlainParams, Index], FloatArray],
    n: int,
) -> FloatArray:
    """Assemble ``evaluate(params of group, indices)`` over the groups of distinct rows."""
    Za = as_float_array(Z)
    _check_width(model, Za)
    out = np.empty(n)
    for row, index in _groups(Za, n):
        out[index] = evaluate(model.params_for(row), index)
    return out


def log_likelihood(
    model: CovariateModel, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, Z: ArrayLike
) -> FloatArray:
    """Per-customer log-likelihood of (x, t_x, T) given each customer's design row.

    One call of the plain likelihood with per-customer scale parameters
    (``log_likelihood_rows`` of the family), not one per distinct design
    row: a fit evaluates it once per parameter per iteration.
    """
    xa, txa, Ta = as_float_array(x), as_float_array(t_x), as_float_array(T)
    Za = as_float_array(Z)
    _check_width(model, Za)
    r, alpha, third, fourth = model.scaled(Za)
    if isinstance(model.base, ParetoNBDParams):  # (r, alpha, s, beta): s is shared
        return paretonbd.log_likelihood_rows(r, alpha, float(third), fourth, xa, txa, Ta)
    return betageo.log_likelihood_rows(r, alpha, third, fourth, model.base.offset, xa, txa, Ta)


def p_alive(
    model: CovariateModel, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, Z: ArrayLike
) -> FloatArray:
    """Per-customer P(alive at T | x, t_x, T, z): the plain model's with the customer's params."""
    xa, txa, Ta = as_float_array(x), as_float_array(t_x), as_float_array(T)

    def evaluate(params: PlainParams, i: Index) -> FloatArray:
        return family_of(params).p_alive(params, xa[i], txa[i], Ta[i])

    return _per_group(model, Z, evaluate, len(xa))


def expected_orders(
    model: CovariateModel, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, Z: ArrayLike
) -> FloatArray:
    """Per-customer E[orders in (T, T+t] | x, t_x, T, z]; ``t`` scalar or one per customer."""
    xa, txa, Ta = as_float_array(x), as_float_array(t_x), as_float_array(T)
    ta = np.broadcast_to(as_float_array(t), xa.shape)

    def evaluate(params: PlainParams, i: Index) -> FloatArray:
        return family_of(params).expected_orders(params, ta[i], xa[i], txa[i], Ta[i])

    return _per_group(model, Z, evaluate, len(xa))


def fit_plain(
    family: Family, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None
) -> FitResult[PlainParams]:
    """The family's plain maximum-likelihood fit (no covariates)."""
    result: FitResult[PlainParams] = FAMILIES[family].fit(x, t_x, T, weights)
    return result


def fit(
    family: Family,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    Z: ArrayLike,
    design: Design,
    weights: ArrayLike | None = None,
    *,
    start: FitResult[PlainParams] | None = None,
) -> FitResult[CovariateModel]:
    """Maximum-likelihood fit of base parameters and covariate effects jointly.

    ``weights`` count identical (x, t_x, T, z) rows, so a caller can collapse
    millions of customers into their distinct rows. The search starts from the
    plain fit (``start``, fitted here when not given) with all effects 0: the
    plain optimum is the covariate model's optimum restricted to no effects,
    so the search begins where the answer is when covariates carry no signal,
    and the fitted likelihood can only improve on the plain one.

    The shared optimiser works on the logarithms of positive parameters;
    effects are free reals, so each effect g enters it as the positive number
    exp(g), whose logarithm the optimiser then moves freely (within its
    +-20 box, far beyond any sensible effect of a category).
    """
    xa, txa, Ta = as_float_array(x), as_float_array(t_x), as_float_array(T)
    validate_summaries(xa, txa, Ta)
    Za = as_float_array(Z)
    width = len(design.columns())
    if Za.ndim != 2 or Za.shape[1] != width:
        raise ValueError(f"Z must have {width} columns, as the design")
    w = prepare_weights(weights, xa.shape)
    plain = start if start is not None else fit_plain(family, xa, txa, Ta, w)
    n_dropout = _DROPOUT_EFFECTS[family]

    def model_of(vector: FloatArray) -> CovariateModel:
        base = FAMILIES[family].params_type(*(float(v) for v in vector[:4]))
        effects = np.log(vector[4:]).reshape(1 + n_dropout, width)
        return CovariateModel(
            family,
            base,
            design,
            tuple(float(g) for g in effects[0]),
            tuple(tuple(float(g) for g in row) for row in effects[1:]),
        )

    def total(vector: FloatArray) -> float:
        try:
            candidate = model_of(vector)
        except ValueError:  # a parameter overflowed in an unbounded polishing step
            return -math.inf
        return float(np.dot(w, log_likelihood(candidate, xa, txa, Ta, Za)))

    base = plain.params.as_dict()
    initial = np.concatenate([list(base.values()), np.ones((1 + n_dropout) * width)])
    best, ll, converged, iterations = minimize_negative_log_likelihood(
        total, initial, float(w.sum())
    )
    return FitResult(model_of(best), ll, converged, iterations, float(w.sum()))


def likelihood_ratio_p_value(plain_ll: float, covariate_ll: float, df: int) -> float:
    """P-value of the likelihood-ratio test of the covariate model against the plain one.

    The plain model is the covariate model with its ``df`` effects fixed at 0,
    so under "covariates carry no signal" 2 (LL_cov - LL_plain) is
    asymptotically chi-square with df degrees of freedom (Wilks). A covariate
    fit that ends below the plain likelihood (a failed search) is no evidence.
    """
    if df <= 0:
        return 1.0
    statistic = max(2.0 * (covariate_ll - plain_ll), 0.0)
    return float(chi2.sf(statistic, df))


def likelihood_ratio_significant(
    plain_ll: float, covariate_ll: float, df: int, level: float = 0.01
) -> bool:
    """Whether the covariates improve the likelihood beyond chance at ``level``."""
    return likelihood_ratio_p_value(plain_ll, covariate_ll, df) < level


@dataclass(frozen=True, slots=True)
class Selection:
    """Both fits and the model to use: with covariates only when they carry signal."""

    plain: FitResult[PlainParams]
    covariate: FitResult[CovariateModel]
    p_value: float
    uses_covariates: bool
    model: CovariateModel  # the covariate fit, or the plain fit with every effect 0


def fit_with_fallback(
    family: Family,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    Z: ArrayLike,
    design: Design,
    weights: ArrayLike | None = None,
    *,
    level: float = 0.01,
) -> Selection:
    """Fit plain and covariate models and keep the covariate one only if the LR test says so.

    Covariates without signal still move the fitted effects by sampling noise,
    which would make customers' valuations differ by group for no reason; the
    plain fit (as a covariate model with zero effects, so the caller has one
    type either way) is kept unless the likelihood-ratio test rejects "no
    effect" at ``level``.
    """
    w = prepare_weights(weights, as_float_array(x).shape)
    plain = fit_plain(family, x, t_x, T, w)
    covariate = fit(family, x, t_x, T, Z, design, w, start=plain)
    df = covariate.params.effects
    p_value = likelihood_ratio_p_value(plain.log_likelihood, covariate.log_likelihood, df)
    significant = p_value < level
    model = covariate.params if significant else CovariateModel.plain(family, plain.params, design)
    return Selection(plain, covariate, p_value, significant, model)
