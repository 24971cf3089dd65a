"""The UCI Online Retail export as contract events, and its net revenue per customer.

A line-level export: every invoice is one purchase (the sum of its lines,
GBP), every ``C`` invoice a return of lines that name no original invoice.
A returned line is matched to the customer's latest earlier invoice that
holds the same stock code, and the returned amounts of one return invoice
against one original become one cancellation. Returned lines with no such
invoice (discounts, manual credits, goods bought before December 2010)
become a cancellation of an order that never exists: the genuinely
unmatched returns, which a worker may only ever report as unknown_order.

``expected_net`` is the oracle: per customer, each order's amount less its
matched refunds (capped at the amount), computed from the lines alone.

    .venv/bin/python bench/online_retail.py ../shared/data/online-retail.csv.gz out.jsonl
"""

from __future__ import annotations

import csv
import gzip
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "shared/data/online-retail.csv.gz"
LONDON = ZoneInfo("Europe/London")  # InvoiceDate is UK local time


@dataclass
class _Invoice:
    number: str
    customer: str
    at: datetime
    amount: Decimal = Decimal(0)
    stock: set[str] = field(default_factory=set)


@dataclass
class Export:
    """The events of one export, in date order, and what they must add up to."""

    events: list[dict[str, Any]]
    expected_net: dict[str, Decimal]
    purchases: int
    returns: int
    unmatched: set[str]  # event ids of cancellations of orders that never exist


def _lines(path: Path) -> Iterator[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)


def load(path: Path = DEFAULT_PATH) -> Export:
    invoices: dict[str, _Invoice] = {}
    returned: list[tuple[str, str, datetime, str, Decimal]] = []
    for line in _lines(path):
        customer = line["CustomerID"].strip()
        number = line["InvoiceNo"]
        if not customer or number.startswith("A"):  # anonymous lines, bad-debt adjustments
            continue
        at = datetime.fromisoformat(line["InvoiceDate"]).replace(tzinfo=LONDON)
        quantity, price = int(line["Quantity"]), Decimal(line["UnitPrice"])
        if number.startswith("C"):
            if quantity < 0 and price >= 0:
                returned.append((number, customer, at, line["StockCode"], -quantity * price))
            continue
        if quantity <= 0 or price < 0:
            continue
        invoice = invoices.setdefault(number, _Invoice(number, customer, at))
        invoice.amount += quantity * price
        invoice.stock.add(line["StockCode"])

    by_customer: dict[str, list[_Invoice]] = defaultdict(list)
    for invoice in invoices.values():
        by_customer[invoice.customer].append(invoice)
    for history in by_customer.values():
        history.sort(key=lambda i: (i.at, i.number))

    refunds: dict[tuple[str, str], Decimal] = defaultdict(Decimal)  # (return, order) -> amount
    when: dict[tuple[str, str], tuple[str, datetime]] = {}
    for number, customer, at, stock, amount in returned:
        earlier = [i for i in by_customer.get(customer, []) if i.at <= at and stock in i.stock]
        order = earlier[-1].number if earlier else f"{number}-unmatched"
        refunds[number, order] += amount
        when[number, order] = (customer, at)

    events: list[tuple[datetime, dict[str, Any]]] = []
    for invoice in invoices.values():
        body = {
            "event_id": f"p-{invoice.number}",
            "order_id": invoice.number,
            "customer_id": invoice.customer,
            "occurred_at": invoice.at.isoformat(),
            "amount": str(invoice.amount),
            "currency": "GBP",
        }
        events.append((invoice.at, body))
    unmatched = set()
    refunded: dict[str, Decimal] = defaultdict(Decimal)
    for (number, order), amount in refunds.items():
        customer, at = when[number, order]
        event_id = f"r-{number}-{order}"
        body = {
            "type": "cancellation",
            "event_id": event_id,
            "order_id": order,
            "customer_id": customer,
            "occurred_at": at.isoformat(),
            "amount": str(amount),
            "currency": "GBP",
            "scope": "order",
            "reason": "returned",
        }
        events.append((at, body))
        if order in invoices:
            refunded[order] += amount
        else:
            unmatched.add(event_id)
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for invoice in invoices.values():
        expected[invoice.customer] += invoice.amount - min(invoice.amount, refunded[invoice.number])
    events.sort(key=lambda pair: (pair[0], pair[1]["event_id"]))
    return Export(
        [body for _, body in events], dict(expected), len(invoices), len(refunds), unmatched
    )


def write_jsonl(export: Export, path: Path) -> None:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in export.events))


if __name__ == "__main__":
    export = load(Path(sys.argv[1]))
    write_jsonl(export, Path(sys.argv[2]))
    print(
        f"{export.purchases} purchases, {export.returns} return events "
        f"({len(export.unmatched)} of orders that never exist), "
        f"{len(export.expected_net)} customers"
    )
