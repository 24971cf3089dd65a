"""Foreign-exchange table: every money figure in state and output is in one base currency.

Rounding policy (why it keeps the state order-independent): an amount is converted
exactly once, as a pure function of the amount and its currency, and the product is
rounded half-even to ``MONEY_QUANTUM`` (4 decimal places) of the base currency.  All
later arithmetic on converted amounts is addition and subtraction of numbers with at
most 4 decimal places, done in ``MONEY_CONTEXT`` (40 significant digits), which is
exact for any realistic total.  Exact addition is associative and commutative, so the
totals do not depend on the order in which events arrive.  Rounding to 2 decimal
places happens only when a figure is written to an output event.

Rates are fixed for the lifetime of a table (no time-varying rates): converting the
same event twice must give the same figure, or replay and reordering would change
the numbers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, Overflow
from importlib import resources
from pathlib import Path

import orjson

MONEY_QUANTUM = Decimal("0.0001")
MONEY_CONTEXT = Context(prec=40, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Overflow])
# Rebasing divides rates; 12 significant digits is far beyond what FX data carries.
_RATE_CONTEXT = Context(prec=12, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Overflow])


class FxError(ValueError):
    """The FX table is unusable (bad file, unknown base): a start-up configuration error."""


@dataclass(frozen=True, slots=True)
class FxTable:
    """Rates to ``base``: ``rates[c]`` is how many units of base one unit of ``c`` buys."""

    base: str
    rates: Mapping[str, Decimal]
    as_of: str = ""

    def __post_init__(self) -> None:
        if self.rates.get(self.base) != Decimal(1):
            raise FxError(f"base currency {self.base!r} must have rate 1 in its own table")
        for code, rate in self.rates.items():
            if not (len(code) == 3 and code.isascii() and code.isupper() and code.isalpha()):
                raise FxError(f"{code!r} is not an ISO 4217 code")
            if not rate.is_finite() or rate <= 0:
                raise FxError(f"rate of {code} must be a positive finite number, got {rate}")

    def knows(self, currency: str) -> bool:
        return currency in self.rates

    def convert(self, amount: Decimal, currency: str) -> Decimal:
        """``amount`` of ``currency`` in base currency, rounded to ``MONEY_QUANTUM``."""
        product = MONEY_CONTEXT.multiply(amount, self.rates[currency])
        return product.quantize(MONEY_QUANTUM, context=MONEY_CONTEXT)

    def cross(self, amount: Decimal, source: str, target: str) -> Decimal:
        """``amount`` of ``source`` expressed in ``target`` (for refunds in another currency)."""
        if source == target:
            return amount
        ratio = MONEY_CONTEXT.divide(self.rates[source], self.rates[target])
        return MONEY_CONTEXT.multiply(amount, ratio).quantize(MONEY_QUANTUM, context=MONEY_CONTEXT)

    def rebased(self, base: str) -> FxTable:
        """The same table expressed against another base currency."""
        if base not in self.rates:
            known = ", ".join(sorted(self.rates))
            raise FxError(f"base currency {base!r} is not in the FX table (known: {known})")
        pivot = self.rates[base]
        rates = {
            code: Decimal(1) if code == base else _RATE_CONTEXT.divide(rate, pivot)
            for code, rate in self.rates.items()
        }
        return FxTable(base=base, rates=rates, as_of=self.as_of)


def parse_fx_table(raw: bytes) -> FxTable:
    """Build a table from the JSON document format of ``state/data/fx_rates.json``."""
    try:
        doc = orjson.loads(raw)
        rates = {str(code): Decimal(str(rate)) for code, rate in doc["rates"].items()}
        return FxTable(base=str(doc["base"]), rates=rates, as_of=str(doc.get("as_of", "")))
    except FxError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
        raise FxError(f"malformed FX table: {exc!r}") from exc


def load_fx_table(path: str | None = None, base: str | None = None) -> FxTable:
    """The configured table: file ``path`` (else ``LTV_FX_RATES``, else the bundled one),
    rebased to ``base`` (else ``LTV_BASE_CURRENCY``, else USD)."""
    path = path if path is not None else os.environ.get("LTV_FX_RATES")
    base = base if base is not None else os.environ.get("LTV_BASE_CURRENCY", "USD")
    if path:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise FxError(f"cannot read FX table {path}: {exc}") from exc
    else:
        raw = resources.files("state").joinpath("data/fx_rates.json").read_bytes()
    return parse_fx_table(raw).rebased(base)
