"""Decoding and validation of input events; serialisation of output events."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from state.events import (
    ChurnRiskChange,
    DeadLetter,
    ErrorCode,
    EventError,
    LtvUpdate,
    check_key,
    decode_cancellation,
    decode_purchase,
)
from state.fx import load_fx_table

FX = load_fx_table(base="USD")

PURCHASE: dict[str, Any] = {
    "event_id": "e-1",
    "order_id": "o-1001",
    "customer_id": "c-42",
    "occurred_at": "2026-11-20T10:15:00+01:00",
    "amount": "499.00",
    "currency": "SEK",
    "margin_rate": 0.42,
    "channel": "paid_search",
    "items": [{"sku": "A1", "category": "books", "quantity": 1, "unit_price": "499.00"}],
    "subscription": {"plan_id": "pro", "interval": "month"},
}
CANCELLATION: dict[str, Any] = {
    "event_id": "e-2",
    "order_id": "o-1001",
    "customer_id": "c-42",
    "occurred_at": "2026-11-21T09:00:00Z",
    "amount": "100.00",
    "scope": "order",
    "reason": "returned",
}


def purchase(**changes: Any) -> bytes:
    doc = {**PURCHASE, **changes}
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...})


def error_of(raw: bytes, *, cancellation: bool = False, **kw: Any) -> EventError:
    decode = decode_cancellation if cancellation else decode_purchase
    with pytest.raises(EventError) as info:
        decode(raw, fx=FX, **kw)
    return info.value


def test_design_example_purchase_decodes_exactly() -> None:
    p = decode_purchase(purchase(), fx=FX)
    assert p.amount == Decimal("499.00")
    assert p.margin_rate == Decimal("0.42")
    assert p.occurred_at == datetime(2026, 11, 20, 9, 15, tzinfo=UTC)
    assert p.items[0].category == "books"
    assert p.subscription is not None and p.subscription.plan_id == "pro"


def test_design_example_cancellation_decodes_with_defaults() -> None:
    c = decode_cancellation(orjson.dumps(CANCELLATION), fx=FX)
    assert (c.amount, c.scope.value, c.currency) == (Decimal("100.00"), "order", None)
    doc = {k: v for k, v in CANCELLATION.items() if k not in ("amount", "scope")}
    c = decode_cancellation(orjson.dumps(doc), fx=FX)
    assert (c.amount, c.scope.value) == (None, "order")


@pytest.mark.parametrize(
    ("amount", "expected"),
    [("0", Decimal(0)), ("0.10", Decimal("0.10")), (0.1, Decimal("0.1")), (12, Decimal(12))],
)
def test_amount_as_string_or_number_is_an_exact_decimal(amount: Any, expected: Decimal) -> None:
    got = decode_purchase(purchase(amount=amount), fx=FX).amount
    assert got == expected and str(got) == str(expected)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    assert decode_purchase(purchase(coupon="X", loyalty={"tier": 2}), fx=FX).order_id == "o-1001"


def test_optional_fields_may_be_absent() -> None:
    raw = purchase(margin_rate=..., channel=..., items=..., subscription=...)
    p = decode_purchase(raw, fx=FX)
    assert (p.margin_rate, p.channel, p.items, p.subscription) == (None, None, (), None)


@pytest.mark.parametrize("raw", [b"{", b"not json", b"\xff\xfe", b"", b'{"a": NaN}'])
def test_invalid_json(raw: bytes) -> None:
    assert error_of(raw).code is ErrorCode.INVALID_JSON


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": "-1.00"},
        {"amount": -1},
        {"amount": "NaN"},
        {"amount": "Infinity"},
        {"amount": "1e3"},
        {"amount": " 1"},
        {"amount": True},
        {"amount": "1000000000000"},
        {"amount": "0.0000001"},
        {"amount": ...},
        {"occurred_at": "2026-11-20T10:15:00"},
        {"occurred_at": "2026-11-20"},
        {"occurred_at": 1790000000},
        {"occurred_at": "2026-13-20T10:15:00Z"},
        {"occurred_at": "0001-01-01T00:00:00+01:00"},
        {"event_id": ""},
        {"event_id": "x" * 129},
        {"order_id": "o\n1"},
        {"customer_id": 42},
        {"customer_id": ...},
        {"margin_rate": 1.5},
        {"margin_rate": -0.1},
        {"currency": "sek"},
        {"currency": "SEKK"},
        {"items": [{"sku": "A", "quantity": -1}]},
        {"items": "books"},
        {"subscription": {"plan_id": "pro", "interval": "fortnight"}},
    ],
)
def test_schema_errors(changes: dict[str, Any]) -> None:
    assert error_of(purchase(**changes)).code is ErrorCode.SCHEMA


@pytest.mark.parametrize("raw", [b"[]", b'"x"', b"1", b"null"])
def test_non_object_documents_are_schema_errors(raw: bytes) -> None:
    assert error_of(raw).code is ErrorCode.SCHEMA


@pytest.mark.parametrize("number", [b"1e999", b"123456789012345678901234567890"])
def test_numbers_beyond_64_bit_or_double_range_are_schema_errors(number: bytes) -> None:
    raw = purchase().replace(b'"499.00"', number, 1)
    assert error_of(raw).code is ErrorCode.SCHEMA


def test_cancellation_scope_must_be_known() -> None:
    raw = orjson.dumps({**CANCELLATION, "scope": "everything"})
    assert error_of(raw, cancellation=True).code is ErrorCode.SCHEMA


def test_unknown_currency() -> None:
    err = error_of(purchase(currency="XYZ"))
    assert err.code is ErrorCode.UNKNOWN_CURRENCY and "XYZ" in err.message
    raw = orjson.dumps({**CANCELLATION, "currency": "XYZ"})
    assert error_of(raw, cancellation=True).code is ErrorCode.UNKNOWN_CURRENCY


def test_too_large_is_checked_before_parsing() -> None:
    assert error_of(b"{" * 70_000).code is ErrorCode.TOO_LARGE  # not invalid_json
    raw = purchase()
    assert error_of(raw, max_bytes=len(raw) - 1).code is ErrorCode.TOO_LARGE
    assert decode_purchase(raw, fx=FX, max_bytes=len(raw)).event_id == "e-1"


def test_key_mismatch() -> None:
    check_key(b"c-42", "c-42")
    check_key("c-42", "c-42")
    for key in (b"c-43", None, b"\xff"):
        with pytest.raises(EventError) as info:
            check_key(key, "c-42")
        assert info.value.code is ErrorCode.KEY_MISMATCH


def test_timestamps_are_normalised_to_utc_and_keep_microseconds() -> None:
    p = decode_purchase(purchase(occurred_at="2026-11-20T00:30:00.1234567-02:30"), fx=FX)
    assert p.occurred_at == datetime(2026, 11, 20, 3, 0, 0, 123456, tzinfo=UTC)
    assert (
        decode_purchase(purchase(occurred_at="2026-11-20t10:15:00z"), fx=FX).occurred_at.hour == 10
    )


def test_ltv_update_serialises_money_as_decimal_strings() -> None:
    update = LtvUpdate(
        customer_id="c-42",
        version=17,
        as_of=datetime(2026, 11, 21, 9, tzinfo=UTC),
        cause={"type": "purchase", "event_id": "e-1"},  # type: ignore[arg-type]
        currency="SEK",
        value_basis="revenue",
        orders=5,
        net_revenue=Decimal("2450.0049"),
        aov=Decimal("490"),
        first_order_at=None,
        last_order_at=None,
        historic_ltv=Decimal("2450"),
        formula_ltv=None,
        predicted_ltv=None,
        total_ltv=Decimal("2450.005"),
        expected_orders=2.31,
        p_alive=0.83,
        churn_risk="low",
        expected_next_order_at=None,
        segment="loyal",
        ltv_cac=None,
        model=None,
        nps_class="promoter",
    )
    doc = orjson.loads(update.to_json())
    assert doc["net_revenue"] == "2450.00" and doc["aov"] == "490.00"
    assert doc["total_ltv"] == "2450.00"  # half-even at the cent
    assert doc["as_of"] == "2026-11-21T09:00:00Z"
    assert doc["cause"] == {"type": "purchase", "event_id": "e-1"}
    assert doc["ltv_cac"] is None and doc["formula_ltv"] is None
    assert list(doc)[-1] == "nps_class" and doc["nps_class"] == "promoter"


def test_churn_risk_change_serialises() -> None:
    change = ChurnRiskChange(
        customer_id="c-42",
        version=18,
        as_of=datetime(2026, 11, 21, tzinfo=UTC),
        previous="low",
        current="medium",
        p_alive=0.45,
        days_since_last_order=93,
        expected_next_order_at=None,
        cause="inactivity",
    )
    assert orjson.loads(change.to_json())["current"] == "medium"


@pytest.mark.parametrize(("value", "encoding"), [(b'{"a": 1}', "utf8"), (b"\xff\x00", "base64")])
def test_dead_letter_keeps_the_original_bytes(value: bytes, encoding: str) -> None:
    err = EventError(ErrorCode.SCHEMA, "bad")
    letter = DeadLetter.build(
        source_topic="orders.purchases",
        partition=3,
        offset=1234,
        key=b"c-42",
        value=value,
        error=err,
        failed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    doc = orjson.loads(letter.to_json())
    assert doc["value_encoding"] == encoding
    assert doc["error"] == {"code": "schema", "message": "bad"}
    assert doc["key"] == "c-42" and doc["offset"] == 1234
    if encoding == "base64":
        assert base64.b64decode(doc["value"]) == value
    else:
        assert doc["value"].encode() == value
