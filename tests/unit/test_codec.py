"""State encoding: lossless, canonical, versioned, and readable without pickle."""

from __future__ import annotations

import zlib
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from domain_histories import CFG, T0, Event, apply, histories, make_purchase, replay
from hypothesis import given, settings

from state.codec import FORMAT_V2, ZDICT_V2, CodecError, decode_state, encode_state
from state.customer import new_state


def test_empty_state_round_trips() -> None:
    s = new_state("c-1")
    assert decode_state(encode_state(s)) == s


@settings(max_examples=2000, deadline=None)
@given(histories())
def test_any_state_round_trips_canonically(events: list[Event]) -> None:
    state = replay(events)
    raw = encode_state(state)
    assert raw[0] == FORMAT_V2
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


def _deflated(body: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -12, 8, zdict=ZDICT_V2)
    return b"\x02" + packer.compress(body) + packer.flush()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x03[]",
        b"\x01not json",
        b"\x01[1,2]",
        b'\x01["c",0]',
        b"\x02not deflate",
        _deflated(b'["c",0]'),
        _deflated(orjson.dumps(["c"] * 10))[:-3],  # truncated
        _deflated(b" " * (17 * 1024 * 1024)),  # inflates past MAX_BODY_BYTES
    ],
)
def test_unreadable_bytes_raise_codec_error(raw: bytes) -> None:
    with pytest.raises(CodecError):
        decode_state(raw)


def test_format_2_is_deflated_json_readable_with_zlib_alone() -> None:
    """Other languages can read states: raw deflate with the published dictionary."""
    raw = encode_state(new_state("c-1"))
    body = zlib.decompressobj(-12, zdict=ZDICT_V2).decompress(raw[1:])
    assert orjson.loads(body)[0] == "c-1"


def test_format_1_values_still_decode() -> None:
    """States written before format 2 (plain JSON body) stay readable."""
    state = replay([make_purchase(1, (0, Decimal(10), "SEK", None, None, [], None))])
    raw = encode_state(state)
    v1 = b"\x01" + zlib.decompressobj(-12, zdict=ZDICT_V2).decompress(raw[1:])
    assert decode_state(v1) == state


def test_typical_state_deflates_to_a_third() -> None:
    """The dictionary earns its place: a demo-like state shrinks well below its JSON."""
    state = replay(
        [make_purchase(i, (0, Decimal(10 + i), "SEK", None, None, [], None)) for i in range(3)]
    )
    raw = encode_state(state)
    body = zlib.decompressobj(-12, zdict=ZDICT_V2).decompress(raw[1:])
    assert len(raw) * 2 < len(body)
