"""The UCI Online Retail export through ``ltv backfill --format lines``, checked in-process.

The export (541 909 order lines, GBP, UK local time, ``C`` invoices of
returns that name no original invoice) goes through the backfill's own
converter (``streams.order_lines``) and the worker's acceptance checks, with
the options ``ltv backfill`` takes for it::

    ltv backfill online-retail.csv.gz --format lines --return-prefix C \\
        --timezone Europe/London --columns order=InvoiceNo,customer=CustomerID,\\
    time=InvoiceDate,sku=StockCode,quantity=Quantity,price=UnitPrice

(``LTV_BASE_CURRENCY=GBP``). The events then go through the worker's
``Processor`` in date order, the table in a dict: no Kafka, no Redis.

``expected_net`` is the oracle, computed from the raw lines alone without
the converter: per customer, each invoice's amount less the returns matched
to it (capped at the amount), a returned line matched to the customer's
latest invoice at or before it that holds the same stock code. It prints
the conversion's figures and how many customers' net revenue in the
processor's states equals the oracle's.

    .venv/bin/python bench/online_retail.py [PATH] [--jsonl OUT]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
from processor import records, run

from state.envelope import customer_state
from state.events import DEFAULT_MAX_BYTES
from state.fx import load_fx_table
from streams.backfill import Validator, checked, open_text
from streams.demo import DemoEvent
from streams.order_lines import BadLine, Conversion, LineFormat, convert, zone
from streams.settings import Settings
from streams.wiring import build_processor

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "shared/data/online-retail.csv.gz"
AS_OF = datetime(2011, 12, 10, tzinfo=UTC)  # the day after the export ends
COLUMNS = {
    "order": "InvoiceNo",
    "customer": "CustomerID",
    "time": "InvoiceDate",
    "sku": "StockCode",
    "quantity": "Quantity",
    "price": "UnitPrice",
}


def line_format() -> LineFormat:
    """How the export is read: InvoiceDate is UK local time, ``C`` invoices are returns."""
    return LineFormat(
        columns=COLUMNS, timezone=zone("Europe/London"), return_prefix="C", currency="GBP"
    )


@dataclass
class Export:
    """The export as the backfill would send it, and what it must add up to."""

    conversion: Conversion
    events: list[DemoEvent]  # passed the worker's checks, in date order
    refused: list[BadLine]  # the conversion's bad lines and the events the checks refused
    seconds: float  # reading, converting and checking: wall
    cpu: float  # and CPU (steadier on a shared machine)
    expected_net: dict[str, Decimal]

    @property
    def purchases(self) -> int:
        return self.conversion.purchases

    @property
    def returns(self) -> int:
        return self.conversion.matched + self.conversion.unmatched

    @property
    def unmatched(self) -> set[str]:
        """Event ids of the cancellations of orders that never exist."""
        return {d.body["event_id"] for d in self.conversion.drafts if d.unmatched}


def load(path: Path = DEFAULT_PATH) -> Export:
    started, cpu = time.perf_counter(), time.process_time()
    with open_text(path) as handle:
        conversion = convert(handle, line_format())
    validator = Validator(load_fx_table(None, "GBP"), DEFAULT_MAX_BYTES)
    items = list(checked(conversion, validator))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Export(
        conversion,
        [i for i in items if isinstance(i, DemoEvent)],
        [i for i in items if isinstance(i, BadLine)],
        seconds,
        cpu,
        expected_net(path),
    )


def expected_net(path: Path) -> dict[str, Decimal]:
    """Per customer (every customer id in the file), net revenue from the raw lines."""
    when: dict[str, datetime] = {}
    owner: dict[str, str] = {}
    amount: dict[str, Decimal] = defaultdict(Decimal)
    stock: dict[str, set[str]] = defaultdict(set)
    returned: list[tuple[str, str, str, Decimal]] = []  # invoice, customer, stock code, amount
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        for line in csv.DictReader(handle):
            customer, number = line["CustomerID"].strip(), line["InvoiceNo"]
            if not customer:
                continue
            at = datetime.fromisoformat(line["InvoiceDate"])  # local times order as instants
            when[number] = min(when.get(number, at), at)
            owner[number] = customer
            quantity, price = int(line["Quantity"]), Decimal(line["UnitPrice"])
            if number.startswith("C") or quantity < 0:
                returned.append((number, customer, line["StockCode"], abs(quantity) * price))
            else:
                amount[number] += quantity * price
                stock[number].add(line["StockCode"])
    invoices: dict[str, list[str]] = defaultdict(list)
    for number in amount:
        invoices[owner[number]].append(number)
    refunded: dict[str, Decimal] = defaultdict(Decimal)
    for number, customer, code, value in returned:
        earlier = [
            i
            for i in invoices[customer]
            if i != number and when[i] <= when[number] and code in stock[i]
        ]
        if earlier:
            refunded[max(earlier, key=lambda i: (when[i], i))] += value
    net = dict.fromkeys(owner.values(), Decimal(0))
    for number, value in amount.items():
        net[owner[number]] += value - min(value, refunded[number])
    return net


def write_jsonl(export: Export, path: Path) -> None:
    """The events as ``ltv backfill`` JSONL (a cancellation is told by its ``scope``)."""
    path.write_bytes(b"".join(orjson.dumps(e.value) + b"\n" for e in export.events))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--jsonl", type=Path, default=None, help="also write the events here")
    args = parser.parse_args()
    export = load(args.path)
    conversion = export.conversion
    if args.jsonl is not None:
        write_jsonl(export, args.jsonl)
    print(
        f"lines read: {conversion.lines}\n"
        f"purchases: {conversion.purchases}\n"
        f"cancellations: {export.returns} ({conversion.matched} matched, "
        f"{conversion.unmatched} of orders that never exist)\n"
        f"rows without customer: {conversion.no_customer}\n"
        f"bad rows: {len(conversion.bad)} (events refused by the worker's checks: "
        f"{len(export.refused) - len(conversion.bad)})\n"
        f"conversion (read, convert, check): {export.seconds:.2f} s wall, "
        f"{export.cpu:.2f} s CPU"
    )
    processor = build_processor(Settings(base_currency="GBP"))
    table, _, outcomes, cpu = run(processor, records(export.events), AS_OF)
    want = export.expected_net
    equal = sum(
        1
        for customer, net in want.items()
        if customer.encode() in table and customer_state(table[customer.encode()]).net == net
    )
    print(
        f"processor: {len(export.events)} events in {cpu:.2f} s CPU, "
        f"outcomes {dict(sorted(outcomes.items()))}\n"
        f"customers whose net revenue equals the lines' arithmetic: {equal} of {len(want)}"
    )


if __name__ == "__main__":
    main()
