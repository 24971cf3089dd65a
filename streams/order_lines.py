"""Line-level order exports as input events: the pure part of ``ltv backfill --format lines``.

Shops export orders one row per order line, and returns as lines of their
own (a negative quantity, or an order id with a returns prefix such as
``C``) that name no original order. ``convert`` turns such a file into
purchases and cancellations (docs/input-events.md); it reads the whole file first,
because an order's lines may be anywhere in it and a return needs every
earlier order of its customer. Nothing here does I/O.

Columns. Each field is read from the column ``--columns FIELD=COLUMN``
names, else from its default: order ``order_id``, customer ``customer_id``,
time ``occurred_at`` (or ``time``), sku ``sku``, quantity ``quantity``,
price ``unit_price``, currency ``currency`` and category ``category`` (both
optional; no currency column means the base currency). An unknown field or
a column the header lacks is an error naming it, before anything is sent.

Time. An RFC 3339 timestamp with offset is taken as it is. A naive one
(no offset) is local time of ``--timezone`` (an IANA name), read with
``--time-format`` (strptime) when given, else as ISO 8601; without a zone a
naive time is a bad line, never guessed as UTC. A local time that a DST
change makes ambiguous or skips is a bad line too: either reading would be
a guess that moves the order by an hour.

Rows. A row without a customer id is counted (``no_customer``) and not
sent: a purchase must belong to someone. A row whose fields do not parse
(quantity not an integer, price not a plain decimal >= 0 with at most six
decimals, time as above) is a ``BadLine`` with its line number and reason.

Purchases. The sale lines (quantity >= 0, no returns prefix) of one order id
are one purchase, event id ``bf-<order id>`` as in the CSV format, so a
re-run sends the same ids and the worker counts the repeats as duplicates:
amount = sum(quantity x unit price), one item per line (sku, quantity,
unit price, category). The first line of an order in the file decides its
customer and currency; a later line that disagrees is a bad line, not
merged: money of two customers or currencies in one order is a data error
the operator has to see, and refusing only the disagreeing line keeps the
rest of the order. Its time is the earliest of its lines' times (long
invoices get stamped across a minute boundary: 43 invoices of UCI Online
Retail, 31 of them with a customer), which does not depend on the order of
lines in the file.

Returns. A return line of customer C returns its sku from C's most recent
order at or before the return's time that holds that sku (latest time, then
greatest order id; never the return's own order id, nor a later order, nor
another customer's order). The refund is |quantity| x unit price in that
order's currency (a return line naming another currency is a bad line).
The lines of one return order against one original order are one
cancellation (scope order, reason ``returned in <return id>``) with the
event id ``bf-ret-<digest of both ids>``, stable across re-runs. Return lines
with no such order (goods bought before the export starts, discounts and
manual credits) become one cancellation per return order of the synthetic
order ``never-ordered-<digest of the return id>``, which no purchase ever
has: the worker holds it and reports it as ``unknown_order`` once the
purchases input has moved past it by ``LTV_PENDING_CANCELLATION_DAYS``.

Refunds larger than an order. The converter sends what the export says was
returned, uncapped; the worker caps an order's refunds at its amount
(``state.customer``: refunded = min(amount, sum of refunds)), so an order
returned in full, or more, no longer counts, and the customer's net revenue
is the sum over orders of amount - min(amount, matched refunds).

Events come out ordered by time (purchases before cancellations at the
same instant), the order the worker sees them in when backfilled. The
backfill checks each with the worker's decoders: an order the worker would
refuse (more than 1000 lines, a body above ``LTV_MAX_MESSAGE_BYTES``) is a bad
line at the order's first line, and is not sent; returns matched to it then
wait in the worker as ``unknown_order``.
"""

from __future__ import annotations

import bisect
import csv
import functools
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from state.events import MAX_DECIMAL_PLACES
from streams.demo import EventKind

#: The fields of a line and the header names each is read from by default.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "order": ("order_id",),
    "customer": ("customer_id",),
    "time": ("occurred_at", "time"),
    "sku": ("sku",),
    "quantity": ("quantity",),
    "price": ("unit_price",),
    "currency": ("currency",),
    "category": ("category",),
}
OPTIONAL_FIELDS = frozenset({"currency", "category"})
UNMATCHED_PREFIX = "never-ordered-"

_QUANTITY = re.compile(r"[+-]?\d+")
_PRICE = re.compile(rf"\d+(?:\.\d{{1,{MAX_DECIMAL_PLACES}}})?")


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that was not sent: its 1-based number in the file and the reason."""

    line: int
    reason: str


def parse_column_map(spec: str) -> dict[str, str]:
    """``order=InvoiceNo,customer=CustomerID`` as {field: column}; ValueError says what is wrong."""
    mapping: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, column = pair.partition("=")
        name, column = name.strip(), column.strip()
        if not sep or not name or not column:
            raise ValueError(f"--columns: {pair!r} is not FIELD=COLUMN")
        mapping[name] = column
    unknown = sorted(set(mapping) - set(DEFAULT_COLUMNS))
    if unknown:
        known = ", ".join(DEFAULT_COLUMNS)
        raise ValueError(f"--columns: unknown field(s) {', '.join(unknown)} (known: {known})")
    return mapping


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or a ValueError naming it."""
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"--timezone: unknown time zone {name!r}") from None


@dataclass(frozen=True, slots=True)
class LineFormat:
    """How to read a line-level export (see the module docstring)."""

    columns: Mapping[str, str] = field(default_factory=dict)
    time_format: str | None = None
    timezone: ZoneInfo | None = None
    return_prefix: str = ""
    currency: str = "USD"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.columns) - set(DEFAULT_COLUMNS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}")
        if self.time_format is not None and "%z" not in self.time_format and not self.timezone:
            raise ValueError(
                f"--time-format {self.time_format!r} reads naive times: pass --timezone "
                "(an IANA name such as Europe/London); they are never guessed to be UTC"
            )

    def positions(self, header: Sequence[str]) -> dict[str, int]:
        """Where each field is in a row of ``header``; ValueError names the missing columns."""
        index = {name.strip(): i for i, name in enumerate(header)}
        found: dict[str, int] = {}
        missing: list[str] = []
        for name, defaults in DEFAULT_COLUMNS.items():
            candidates = (self.columns[name],) if name in self.columns else defaults
            column = next((c for c in candidates if c in index), None)
            if column is not None:
                found[name] = index[column]
            elif name in self.columns or name not in OPTIONAL_FIELDS:
                missing.append(f"{' or '.join(candidates)} ({name})")
        if missing:
            raise ValueError(
                f"header lacks column(s) {', '.join(missing)}; name them with "
                "--columns FIELD=COLUMN,..."
            )
        return found

    def parse_time(self, text: str) -> datetime:
        """The instant of a time field; ValueError says why it is refused."""
        text = text.strip()
        try:
            if self.time_format is not None:
                at = datetime.strptime(text, self.time_format)
            else:
                at = datetime.fromisoformat(text)
        except ValueError:
            wanted = self.time_format or "RFC 3339 / ISO 8601"
            raise ValueError(f"time {text!r} does not match {wanted}") from None
        if at.tzinfo is not None:
            return at
        if self.timezone is None:
            raise ValueError(
                f"time {text!r} has no offset: pass --timezone (an IANA name) for naive times"
            )
        return localize(at, self.timezone)

    def time_or_reason(self, text: str) -> datetime | str:
        """``parse_time``, with the reason for refusing ``text`` as the result."""
        try:
            return self.parse_time(text)
        except ValueError as exc:
            return str(exc)


def localize(naive: datetime, tz: ZoneInfo) -> datetime:
    """``naive`` as local time of ``tz``; ValueError when DST makes it ambiguous or skips it."""
    early, late = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    if early.utcoffset() == late.utcoffset():
        return early
    back = early.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    what = "is ambiguous (it occurs twice)" if back == naive else "does not exist (skipped)"
    raise ValueError(f"local time {naive.isoformat()} {what} in {tz.key}: give an offset")


@dataclass(frozen=True, slots=True)
class Line:
    """One parsed order line."""

    number: int
    order_id: str
    customer_id: str
    at: datetime
    sku: str
    quantity: int
    unit_price: Decimal
    currency: str
    category: str | None


def parse_line(
    number: int, values: Mapping[str, str], fmt: LineFormat, at: datetime
) -> Line | BadLine:
    """The typed line of a row's ``values`` (by field), or why it is refused."""
    order_id = values["order"]
    if not order_id:
        return BadLine(number, "empty order id")
    sku = values["sku"]
    if not sku:
        return BadLine(number, "empty sku")
    quantity = values["quantity"]
    if not _QUANTITY.fullmatch(quantity):
        return BadLine(number, f"quantity {quantity!r} is not an integer")
    price = values["price"]
    if not _PRICE.fullmatch(price):
        return BadLine(
            number,
            f"unit price {price!r} is not a plain decimal >= 0 with at most "
            f"{MAX_DECIMAL_PLACES} decimals",
        )
    return Line(
        number,
        order_id,
        values["customer"],
        at,
        sku,
        int(quantity),
        Decimal(price),
        values.get("currency") or fmt.currency,
        values.get("category") or None,
    )


def digest(*ids: str) -> str:
    """A stable 24-hex-digit name of ``ids`` (for ids derived from two others)."""
    joined = "\x1f".join(ids).encode()
    return hashlib.blake2b(joined, digest_size=12).hexdigest()


def utc_text(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def money(value: Decimal) -> str:
    return format(value, "f")


@dataclass(slots=True)
class Order:
    """The lines of one order id gathered so far (customer and currency of its first line)."""

    order_id: str
    customer_id: str
    currency: str
    first_line: int
    at: datetime
    amount: Decimal = Decimal(0)
    items: list[dict[str, Any]] = field(default_factory=list)
    returns: list[Line] = field(default_factory=list)

    def add(self, line: Line, returned: bool) -> BadLine | None:
        """Take ``line`` into the order, or say why it does not belong to it."""
        if line.customer_id != self.customer_id:
            return BadLine(
                line.number,
                f"order {self.order_id} is customer {self.customer_id}'s "
                f"(line {self.first_line}), not {line.customer_id}'s",
            )
        if line.currency != self.currency:
            return BadLine(
                line.number,
                f"order {self.order_id} is in {self.currency} (line {self.first_line}), "
                f"not {line.currency}",
            )
        self.at = min(self.at, line.at)
        if returned:
            self.returns.append(line)
            return None
        self.amount += line.quantity * line.unit_price
        item: dict[str, Any] = {
            "sku": line.sku,
            "quantity": line.quantity,
            "unit_price": money(line.unit_price),
        }
        if line.category is not None:
            item["category"] = line.category
        self.items.append(item)
        return None


@dataclass(frozen=True, slots=True)
class Draft:
    """An event to check and send: its kind, JSON body and the line it stems from."""

    line: int
    kind: EventKind
    at: datetime
    body: dict[str, Any]
    unmatched: bool = False  # a cancellation of an order that never exists


@dataclass(frozen=True, slots=True)
class Conversion:
    """What ``convert`` made of a file."""

    drafts: tuple[Draft, ...]
    bad: tuple[BadLine, ...]
    lines: int  # data rows read (blank rows skipped)
    no_customer: int  # rows without a customer id, not sent

    @property
    def purchases(self) -> int:
        return sum(1 for d in self.drafts if d.kind == "purchase")

    @property
    def matched(self) -> int:
        return sum(1 for d in self.drafts if d.kind == "cancellation" and not d.unmatched)

    @property
    def unmatched(self) -> int:
        return sum(1 for d in self.drafts if d.unmatched)


def convert(lines: Iterable[str], fmt: LineFormat) -> Conversion:
    """The purchases and cancellations of a line-level export (rules: module docstring)."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return Conversion((), (), 0, 0)
    positions = fmt.positions(header)
    orders: dict[str, Order] = {}
    bad: list[BadLine] = []
    rows = no_customer = 0
    # Lines of an order share their time text: parse each text once.
    time_of = functools.lru_cache(maxsize=4096)(fmt.time_or_reason)
    for row in reader:
        if not row:
            continue
        rows += 1
        number = reader.line_num
        if len(row) != len(header):
            bad.append(BadLine(number, f"expected {len(header)} fields, got {len(row)}"))
            continue
        values = {name: row[i].strip() for name, i in positions.items()}
        if not values["customer"]:
            no_customer += 1
            continue
        at = time_of(values["time"])
        if isinstance(at, str):
            bad.append(BadLine(number, at))
            continue
        line = parse_line(number, values, fmt, at)
        if isinstance(line, BadLine):
            bad.append(line)
            continue
        order = orders.get(line.order_id)
        if order is None:
            order = orders[line.order_id] = Order(
                line.order_id, line.customer_id, line.currency, number, line.at
            )
        returned = line.quantity < 0 or bool(
            fmt.return_prefix and line.order_id.startswith(fmt.return_prefix)
        )
        misfit = order.add(line, returned)
        if misfit is not None:
            bad.append(misfit)
    drafts = [purchase(o) for o in orders.values() if o.items]
    refunds, refused = match_returns(list(orders.values()))
    drafts += refunds
    bad += refused
    drafts.sort(key=lambda d: (d.at, d.kind != "purchase", d.body["event_id"]))
    return Conversion(tuple(drafts), tuple(sorted(bad, key=lambda b: b.line)), rows, no_customer)


def purchase(order: Order) -> Draft:
    """The purchase of an order's sale lines."""
    body = {
        "event_id": f"bf-{order.order_id}",
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "occurred_at": utc_text(order.at),
        "amount": money(order.amount),
        "currency": order.currency,
        "items": order.items,
    }
    return Draft(order.first_line, "purchase", order.at, body)


@dataclass(slots=True)
class Refund:
    """The returned lines of one return order against one original order."""

    returned: Order
    order_id: str
    currency: str
    line: int
    unmatched: bool
    amount: Decimal = Decimal(0)

    def draft(self) -> Draft:
        body = {
            "event_id": f"bf-ret-{digest(self.returned.order_id, self.order_id)}",
            "order_id": self.order_id,
            "customer_id": self.returned.customer_id,
            "occurred_at": utc_text(self.returned.at),
            "amount": money(self.amount),
            "currency": self.currency,
            "scope": "order",
            "reason": f"returned in {self.returned.order_id}",
        }
        return Draft(self.line, "cancellation", self.returned.at, body, self.unmatched)


def latest_holding(held: Sequence[tuple[datetime, str]], at: datetime, own: str) -> str | None:
    """The id of the latest order of ``held`` (sorted by time, then id) at or before ``at``,
    other than ``own`` (None: there is none)."""
    end = bisect.bisect_right(held, at, key=lambda entry: entry[0])
    return next((order_id for _, order_id in reversed(held[:end]) if order_id != own), None)


def match_returns(orders: Sequence[Order]) -> tuple[list[Draft], list[BadLine]]:
    """The cancellations of the orders' return lines (rules: module docstring)."""
    by_id = {o.order_id: o for o in orders}
    holding: dict[tuple[str, str], list[tuple[datetime, str]]] = defaultdict(list)
    for o in orders:
        for sku in {item["sku"] for item in o.items}:
            holding[o.customer_id, sku].append((o.at, o.order_id))
    for held in holding.values():
        held.sort()
    refunds: dict[tuple[str, str], Refund] = {}
    bad: list[BadLine] = []
    for o in orders:
        for line in o.returns:
            held = holding.get((o.customer_id, line.sku), [])
            original = latest_holding(held, o.at, o.order_id)
            if original is None:
                target, currency = UNMATCHED_PREFIX + digest(o.order_id), o.currency
            else:
                target, currency = original, by_id[original].currency
                if currency != o.currency:
                    bad.append(
                        BadLine(
                            line.number,
                            f"return of {line.sku} in {o.currency} matches order {target} "
                            f"in {currency}",
                        )
                    )
                    continue
            refund = refunds.get((o.order_id, target))
            if refund is None:
                refund = refunds[o.order_id, target] = Refund(
                    o, target, currency, line.number, original is None
                )
            refund.amount += abs(line.quantity) * line.unit_price
    return [r.draft() for r in refunds.values()], bad
