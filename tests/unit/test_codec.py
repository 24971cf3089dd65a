"""State encoding: lossless, canonical, versioned, and readable without pickle."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from domain_histories import CFG, T0, Event, apply, histories, make_purchase, replay
from hypothesis import given, settings

from state.codec import FORMAT_V1, CodecError, decode_state, encode_state
from state.customer import new_state


def test_empty_state_round_trips() -> None:
    s = new_state("c-1")
    assert decode_state(encode_state(s)) == s


@settings(max_examples=2000, deadline=None)
@given(histories())
def test_any_state_round_trips_canonically(events: list[Event]) -> None:
    state = replay(events)
    raw = encode_state(state)
    assert raw[0] == FORMAT_V1
    back = decode_state(raw)
    assert back == state
    assert encode_state(back) == raw


def test_decoded_state_keeps_working() -> None:
    """The compaction cache is rebuilt on decode: a much later order still compacts."""
    first = make_purchase(1, (0, Decimal(10), "SEK", None, None, [], None))
    state = decode_state(encode_state(replay([first])))
    later = make_purchase(
        2, (0, Decimal(5), "SEK", None, None, [], None), start=T0 + timedelta(days=200)
    )
    t = apply(state, later, CFG)
    assert t.outcome == "applied" and t.state.orders == 2 and t.state.ledger.keys() == {"o-2"}


@pytest.mark.parametrize("raw", [b"", b"\x02[]", b"\x01not json", b"\x01[1,2]", b'\x01["c",0]'])
def test_unreadable_bytes_raise_codec_error(raw: bytes) -> None:
    with pytest.raises(CodecError):
        decode_state(raw)


def test_encoding_is_plain_json_after_the_format_byte() -> None:
    raw = encode_state(new_state("c-1"))
    assert orjson.loads(raw[1:])[0] == "c-1"
