"""``ltv backfill`` parsing: CSV and JSONL lines to input events or numbered bad lines."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from state.events import decode_cancellation, decode_purchase
from state.fx import load_fx_table
from streams.backfill import (
    BadLine,
    Parsed,
    Validator,
    detect_format,
    event_kind,
    parse_csv,
    parse_jsonl,
)
from streams.demo import DemoEvent

FX = load_fx_table(base="USD")
VALIDATOR = Validator(FX, max_bytes=65536)


def csv_items(text: str) -> list[Parsed]:
    return list(parse_csv(text.splitlines(keepends=True), base_currency="USD", validator=VALIDATOR))


def jsonl_items(text: str) -> list[Parsed]:
    return list(parse_jsonl(text.splitlines(keepends=True), validator=VALIDATOR))


def events(items: list[Parsed]) -> list[DemoEvent]:
    return [i for i in items if isinstance(i, DemoEvent)]


def bad(items: list[Parsed]) -> list[BadLine]:
    return [i for i in items if isinstance(i, BadLine)]


def test_csv_rows_become_purchases_with_derived_ids() -> None:
    items = csv_items(
        "order_id,customer_id,date,amount,currency\n"
        "o-1,c-1,1997-01-01,29.33,\n"
        "o-2,c-1,1997-01-18T10:00:00+01:00,0.00,EUR\n"
    )
    assert bad(items) == []
    first, second = events(items)
    assert first.kind == "purchase" and first.key == "c-1"
    assert first.value == {
        "event_id": "bf-o-1",
        "order_id": "o-1",
        "customer_id": "c-1",
        "occurred_at": "1997-01-01T00:00:00Z",
        "amount": "29.33",
        "currency": "USD",
    }
    assert second.value["occurred_at"] == "1997-01-18T10:00:00+01:00"
    assert second.value["currency"] == "EUR"
    # What is sent is what the worker accepts.
    decoded = decode_purchase(orjson.dumps(second.value), fx=FX)
    assert decoded.occurred_at.isoformat() == "1997-01-18T09:00:00+00:00"


def test_csv_without_currency_column_uses_the_base_currency() -> None:
    (item,) = csv_items("customer_id,order_id,date,amount\nc-9,o-9,2026-02-03,10\n")
    assert isinstance(item, DemoEvent) and item.value["currency"] == "USD"


def test_csv_bad_rows_are_reported_with_line_numbers_and_not_sent() -> None:
    items = csv_items(
        "customer_id,order_id,date,amount,currency\n"
        "c-1,o-1,2026-01-01,10.00,USD\n"  # line 2: good
        "c-1,o-2,2026-01-02,-5,USD\n"  # line 3: negative amount
        "c-1,o-3,01/02/2026,5,USD\n"  # line 4: not a date
        "c-1,o-4,2026-01-04,5,XXX\n"  # line 5: unknown currency
        "c-1,o-5,2026-01-05\n"  # line 6: too few fields
        "\n"  # line 7: blank, skipped
        ",o-6,2026-01-06,5,USD\n"  # line 8: empty customer id
        "c-2,o-7,2026-01-07,7.5,USD\n"  # line 9: good
    )
    assert [e.value["order_id"] for e in events(items)] == ["o-1", "o-7"]
    lines = {b.line: b.reason for b in bad(items)}
    assert sorted(lines) == [3, 4, 5, 6, 8]
    assert lines[3].startswith("schema") and "amount" in lines[3]
    assert lines[4].startswith("schema") and "occurred_at" in lines[4]
    assert lines[5].startswith("unknown_currency")
    assert "expected 5 fields, got 3" in lines[6]
    assert "customer_id" in lines[8]


def test_csv_header_must_name_the_required_columns() -> None:
    items = csv_items("customer,order_id,date\nc-1,o-1,2026-01-01\n")
    assert items == [BadLine(1, "header lacks column(s) customer_id, amount")]
    assert csv_items("") == []


def test_jsonl_tells_purchases_and_cancellations_apart() -> None:
    purchase = {
        "event_id": "e-1",
        "order_id": "o-1",
        "customer_id": "c-1",
        "occurred_at": "2026-01-01T00:00:00Z",
        "amount": "10.00",
        "currency": "USD",
    }
    by_scope = {
        "event_id": "e-2",
        "order_id": "o-1",
        "customer_id": "c-1",
        "occurred_at": "2026-01-02T00:00:00Z",
        "scope": "order",
    }
    partial_refund = {**purchase, "event_id": "e-3", "amount": "4.00", "type": "cancellation"}
    text = "\n".join(orjson.dumps(d).decode() for d in (purchase, by_scope, partial_refund))
    items = jsonl_items(text + "\n\n")
    assert bad(items) == []
    kinds = [(e.kind, e.value["event_id"]) for e in events(items)]
    assert kinds == [("purchase", "e-1"), ("cancellation", "e-2"), ("cancellation", "e-3")]
    refund = events(items)[2].value
    assert "type" not in refund  # sent in the format of docs/input-events.md
    assert decode_cancellation(orjson.dumps(refund), fx=FX).amount == 4


def test_jsonl_bad_lines_carry_their_line_numbers() -> None:
    good = orjson.dumps(
        {
            "event_id": "e-1",
            "order_id": "o-1",
            "customer_id": "c-1",
            "occurred_at": "2026-01-01T00:00:00Z",
            "amount": "1",
            "currency": "USD",
        }
    ).decode()
    text = "\n".join(
        [
            good,  # 1
            "{not json",  # 2
            "[1, 2]",  # 3
            '{"type": "refund", "event_id": "x"}',  # 4
            "",  # 5 blank
            '{"event_id": "e-9", "customer_id": "c", "order_id": "o"}',  # 6: no time, amount
            good.replace("2026-01-01T00:00:00Z", "2026-01-01T00:00:00"),  # 7: naive time
        ]
    )
    items = jsonl_items(text)
    assert len(events(items)) == 1
    lines = {b.line: b.reason for b in bad(items)}
    assert sorted(lines) == [2, 3, 4, 6, 7]
    assert lines[2].startswith("invalid_json")
    assert "got list" in lines[3]
    assert "'refund'" in lines[4]
    assert "occurred_at" in lines[6] and "amount" in lines[6]
    assert lines[7].startswith("schema")


def test_event_kind_rule() -> None:
    assert event_kind({"amount": "1", "currency": "USD"}) == "purchase"
    assert event_kind({"scope": "subscription"}) == "cancellation"
    assert event_kind({"type": "purchase", "scope": "order"}) == "purchase"
    assert event_kind({"type": "other"}) is None


def test_format_from_file_name() -> None:
    assert detect_format(Path("orders.CSV")) == "csv"
    assert detect_format(Path("events.jsonl")) == "jsonl"
    assert detect_format(Path("events.ndjson")) == "jsonl"
    with pytest.raises(ValueError, match="--format"):
        detect_format(Path("orders.txt"))
