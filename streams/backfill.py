"""``ltv backfill``: historic orders from a CSV or JSONL file into the input topics.

Parsing is pure (``parse_csv``, ``parse_jsonl``): every line becomes either an
input event or a ``BadLine`` naming its line number and why it was refused.
Each event is checked with the worker's own decoders (``state.events``)
before it is sent, so a line the worker would dead-letter is reported here,
at the operator's terminal, instead of being published.

CSV: a header row naming ``customer_id, order_id, date, amount`` and
optionally ``currency`` (default ``LTV_BASE_CURRENCY``), any order. Every row
is one purchase with event id ``bf-<order_id>``, so re-running a backfill
sends the same ids and the worker counts the repeats as duplicates. ``date``
is ``YYYY-MM-DD`` (midnight UTC, the start of that UTC purchase day) or an
RFC 3339 timestamp with offset.

JSONL: one input event (docs/input-events.md) per line. A line is a cancellation when its
``"type"`` is ``"cancellation"``, or when it has no ``"type"`` but has a
``"scope"``; otherwise it is a purchase. (A purchase and a partial refund can
carry the same fields, so a refund without ``scope`` needs
``"type": "cancellation"``.) The ``type`` field is removed before sending.
Blank lines are skipped.

Lines (``--format lines``): one row per order line of a shop's export, with
returns as lines of their own; ``streams.order_lines`` groups them into
purchases and matches the returns to cancellations (its docstring has the
rules). The whole file is converted before anything is sent, so a header
without the needed columns stops the backfill before the first event.

Any of them may be gzip-compressed (a name ending in ``.gz``).
"""

from __future__ import annotations

import csv
import gzip
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import orjson
from tqdm import tqdm

from state.events import EventError, decode_event
from state.fx import FxTable, load_fx_table
from streams.demo import DemoEvent, EventKind
from streams.order_lines import BadLine, Conversion, LineFormat, convert
from streams.publisher import publish
from streams.settings import Settings

#: The formats read one line at a time, and ``lines``, which is converted as a whole.
RowFormat = Literal["csv", "jsonl"]
Format = RowFormat | Literal["lines"]

CSV_REQUIRED = ("customer_id", "order_id", "date", "amount")
_BARE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SUFFIXES: dict[str, RowFormat] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


Parsed = DemoEvent | BadLine


@dataclass(frozen=True, slots=True)
class Validator:
    """The worker's acceptance rules for one event, applied before sending."""

    fx: FxTable
    max_bytes: int

    def check(self, line: int, kind: EventKind, body: dict[str, Any]) -> Parsed:
        """The event, or the reason the worker would dead-letter it."""
        raw = orjson.dumps(body)
        try:
            decode_event(kind, raw, fx=self.fx, max_bytes=self.max_bytes)
        except EventError as exc:
            return BadLine(line, str(exc))
        return DemoEvent(kind, body["customer_id"], body)


def csv_timestamp(text: str) -> str:
    """A bare date becomes midnight UTC; anything else is left to the event decoder."""
    text = text.strip()
    return f"{text}T00:00:00Z" if _BARE_DATE.fullmatch(text) else text


def parse_csv(
    lines: Iterable[str], *, base_currency: str, validator: Validator
) -> Iterator[Parsed]:
    """One purchase per data row (see the module docstring for the columns)."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    columns = {name.strip(): i for i, name in enumerate(header)}
    missing = [name for name in CSV_REQUIRED if name not in columns]
    if missing:
        yield BadLine(reader.line_num, f"header lacks column(s) {', '.join(missing)}")
        return
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            yield BadLine(reader.line_num, f"expected {len(header)} fields, got {len(row)}")
            continue

        values = {name: row[i].strip() for name, i in columns.items()}
        order_id = values["order_id"]
        body = {
            "event_id": f"bf-{order_id}",
            "order_id": order_id,
            "customer_id": values["customer_id"],
            "occurred_at": csv_timestamp(values["date"]),
            "amount": values["amount"],
            "currency": values.get("currency") or base_currency,
        }
        yield validator.check(reader.line_num, "purchase", body)


def event_kind(doc: dict[str, Any]) -> EventKind | None:
    """Purchase or cancellation by the rule of the module docstring; None: bad type."""
    declared = doc.get("type")
    if declared is None:
        return "cancellation" if "scope" in doc else "purchase"
    if declared in ("purchase", "cancellation"):
        kind: EventKind = declared
        return kind
    return None


def parse_jsonl(lines: Iterable[str], *, validator: Validator) -> Iterator[Parsed]:
    """One input event (docs/input-events.md) per non-blank line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield BadLine(number, f"invalid_json: {exc}")
            continue
        if not isinstance(doc, dict):
            yield BadLine(number, f"schema: expected a JSON object, got {type(doc).__name__}")
            continue
        kind = event_kind(doc)
        if kind is None:
            yield BadLine(
                number, f"schema: type must be purchase or cancellation, not {doc['type']!r}"
            )
            continue
        doc.pop("type", None)
        yield validator.check(number, kind, doc)


def checked(conversion: Conversion, validator: Validator) -> Iterator[Parsed]:
    """A line-level conversion's bad lines, then its events as the worker would take them."""
    yield from conversion.bad
    for draft in conversion.drafts:
        item = validator.check(draft.line, draft.kind, draft.body)
        if isinstance(item, BadLine):  # name the event: it stems from several lines
            item = BadLine(item.line, f"{draft.kind} {draft.body['event_id']}: {item.reason}")
        yield item


def detect_format(path: Path) -> Format:
    """The format implied by the file name (for a missing ``--format``)."""
    name = path.name.lower().removesuffix(".gz")
    try:
        return _SUFFIXES[Path(name).suffix]
    except KeyError:
        raise ValueError(
            f"cannot tell the format of {path.name}; pass --format csv, jsonl or lines"
        ) from None


def open_text(path: Path) -> TextIO:
    """``path`` opened as UTF-8 text, decompressed when its name ends in ``.gz``."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


@dataclass(slots=True)
class Report:
    """What a backfill did: events acknowledged by Kafka, the lines refused, and
    (lines format) the rows without a customer id, which are not sent."""

    sent: int = 0
    bad: int = 0
    no_customer: int = 0


def parse_file(
    handle: TextIO, fmt: RowFormat, *, base_currency: str, validator: Validator
) -> Iterator[Parsed]:
    """The parser of ``fmt`` over an open file."""
    if fmt == "csv":
        return parse_csv(handle, base_currency=base_currency, validator=validator)
    return parse_jsonl(handle, validator=validator)


async def backfill(
    path: Path,
    fmt: Format,
    settings: Settings,
    *,
    rate: float | None,
    line_format: LineFormat | None = None,
    errors: TextIO | None = None,
) -> Report:
    """Send the events of ``path`` with a progress bar; report bad lines on ``errors``.

    ``line_format`` is how to read ``--format lines`` (default: the default
    columns, RFC 3339 times, the base currency). ``errors`` defaults to the
    ``sys.stderr`` of the call, not of the import.
    """
    errors = errors or sys.stderr
    validator = Validator(
        load_fx_table(
            str(settings.fx_rates) if settings.fx_rates else None, settings.base_currency
        ),
        settings.max_message_bytes,
    )
    report = Report()
    with open_text(path) as handle:
        if fmt == "lines":
            conversion = convert(handle, line_format or LineFormat(currency=settings.base_currency))
            report.no_customer = conversion.no_customer
            items = checked(conversion, validator)
            total, unit = len(conversion.bad) + len(conversion.drafts), "event"
        else:
            total, unit = sum(1 for _ in handle) - (1 if fmt == "csv" else 0), "line"
            handle.seek(0)
            items = parse_file(
                handle, fmt, base_currency=settings.base_currency, validator=validator
            )
        with tqdm(total=max(total, 0), unit=unit, desc=path.name, file=errors) as bar:

            def good() -> Iterator[DemoEvent]:
                for item in items:
                    bar.update(1)
                    if isinstance(item, BadLine):
                        report.bad += 1
                        bar.write(f"ltv backfill: {path}:{item.line}: {item.reason}", file=errors)
                    else:
                        yield item

            report.sent = await publish(good(), settings, rate=rate or None)
    return report
