"""An oversized input record becomes a dead letter the producer can still send."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime

import orjson

from ltv.valuation import ValuationConfig
from state.customer import StateConfig
from state.fx import load_fx_table
from streams.processing import Processor, Record

LIMIT = 65536


def letter_of(value: bytes) -> dict[str, object]:
    cfg = StateConfig(fx=load_fx_table(None, "USD"))
    p = Processor(cfg, ValuationConfig(), base_currency="USD", max_bytes=LIMIT)
    record = Record("orders.purchases", 2, 77, b"c-1", value)
    result = p.handle("purchase", record, None, datetime(2026, 1, 1, tzinfo=UTC))
    assert result.dead_letter_codes == ["too_large"]
    (output,) = result.outputs
    assert len(output.value) < 2 * LIMIT  # whatever the input size
    letter: dict[str, object] = orjson.loads(output.value)
    return letter


def test_a_megabyte_of_binary_keeps_its_head_in_base64() -> None:
    value = random.Random(1).randbytes(1_000_000) + b"\xff"
    letter = letter_of(value)
    assert letter["value_encoding"] == "base64"
    assert base64.b64decode(str(letter["value"])) == value[:LIMIT]
    assert (letter["partition"], letter["offset"]) == (2, 77)
    error = letter["error"]
    assert isinstance(error, dict) and error["code"] == "too_large"
    assert f"first {LIMIT} of {len(value)} bytes" in error["message"]


def test_an_oversized_text_keeps_its_head_as_text() -> None:
    value = b'{"note": "' + b"x" * 1_000_000 + b'"}'
    letter = letter_of(value)
    assert letter["value_encoding"] == "utf8"
    assert letter["value"] == value[:LIMIT].decode()
