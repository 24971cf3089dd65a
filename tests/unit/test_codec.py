"""State encoding: lossless, canonical, versioned, and readable without pickle."""

from __future__ import annotations

import zlib
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from domain_histories import (
    CFG,
    T0,
    Event,
    apply,
    histories,
    make_feedback,
    make_purchase,
    replay,
)
from hypothesis import given, settings

from state.codec import FORMAT, ZDICT, CodecError, decode_state, encode_body, encode_state
from state.customer import Score, id_hash, new_state


def test_empty_state_round_trips() -> None:
    s = new_state("c-1")
    assert decode_state(encode_state(s)) == s


@settings(max_examples=2000, deadline=None)
@given(histories())
def test_any_state_round_trips_canonically(events: list[Event]) -> None:
    state = replay(events)
    raw = encode_state(state)
    assert raw[0] == FORMAT
    back = decode_state(raw)
    assert back == state
    assert encode_state(back) == raw


def test_decoded_state_keeps_working() -> None:
    """Aggregates are rebuilt on decode: a later order and a refund of the first
    apply to the decoded state exactly as to the live one."""
    first = make_purchase(1, (0, Decimal(10), "SEK", None, None, [], None))
    live = replay([first])
    state = decode_state(encode_state(live))
    later = make_purchase(
        2, (0, Decimal(5), "SEK", None, None, [], None), start=T0 + timedelta(days=2000)
    )
    t = apply(state, later, CFG)
    assert t.outcome == "applied" and t.state.orders == 2
    assert t.state.ledger.keys() == {id_hash("o-1"), id_hash("o-2")}
    assert t.state == apply(live, later, CFG).state


#: The body of a format-3 value written before the state kept NPS scores: one
#: order of 10.50 SEK with a 2 SEK refund.
WITHOUT_FEEDBACK = (
    b'["c-1",2,"10.5000",["seo",1772323200000000,"o-1"],["books"],null,null,null,'
    b'[[2815173406902266469],[1772323200000000],["SEK",1],["10.50"],["0.5",1],'
    b'[[0,"2",null]]],[],[8458119715100675186]]'
)


#: The same order with an NPS answer, as written before the state kept first
#: categories (the documented twelfth element).
WITH_FEEDBACK = WITHOUT_FEEDBACK[:-1] + b',[1772323200000000,"f-1",9]]'


def _with_firsts(extra: bytes) -> bytes:
    """``WITHOUT_FEEDBACK`` with ``extra`` appended to its channel element."""
    return WITHOUT_FEEDBACK.replace(b'"o-1"]', b'"o-1"' + extra + b"]", 1)


@pytest.mark.parametrize("body", [WITHOUT_FEEDBACK, WITH_FEEDBACK])
def test_a_value_written_before_still_decodes_and_encodes_the_same(body: bytes) -> None:
    """Written before the score or the first category was kept: a state without
    a first category has the old layout, byte for byte."""
    state = decode_state(_deflated(body))
    assert (state.score is None) == (body == WITHOUT_FEEDBACK)
    assert (state.orders, state.net, state.version) == (1, Decimal("8.5000"), 2)
    # Its category came from an order it no longer knows (state.customer).
    assert state.categories == {"books"} and state.first_category is None
    assert encode_body(state) == body


def test_the_latest_score_round_trips_as_a_trailing_element() -> None:
    order = make_purchase(1, (0, Decimal(10), "SEK", None, None, [], None))
    at = T0 + timedelta(minutes=90)
    for events in ([make_feedback((90, 7, 2))], [order, make_feedback((90, 7, 2))]):
        state = replay(events)
        assert state.score == Score(at, "f-2", 7)
        raw = encode_state(state)
        assert decode_state(raw) == state and encode_state(decode_state(raw)) == raw
        assert orjson.loads(encode_body(state))[11:] == [[int(at.timestamp()) * 10**6, "f-2", 7]]


@pytest.mark.parametrize("categories", [[], ["toys", "books"]])
@pytest.mark.parametrize("answered", [False, True])
def test_the_first_category_round_trips_with_or_without_a_score(
    categories: list[str], answered: bool
) -> None:
    """It extends the channel element to six entries, only when there is one;
    the score stays the optional twelfth element."""
    order = make_purchase(1, (0, Decimal(10), "SEK", None, None, categories, None))
    state = replay([order, make_feedback((90, 7, 2))] if answered else [order])
    assert state.first_category == (min(categories) if categories else None)
    raw = encode_state(state)
    assert decode_state(raw) == state and encode_state(decode_state(raw)) == raw
    body = orjson.loads(encode_body(state))
    at = int(T0.timestamp()) * 10**6
    assert body[3] == [None, None, None, *(["books", at, "o-1"] if categories else [])]
    assert len(body) == (12 if answered else 11)


def _deflated(body: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -12, 8, zdict=ZDICT)
    return b"\x03" + packer.compress(body) + packer.flush()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x04[]",
        b"\x01not json",  # formats before 3 are not read
        b"\x02" + _deflated(b"[]")[1:],
        b"\x03not deflate",
        _deflated(b"not json"),
        _deflated(b"[1,2]"),
        _deflated(b'["c",0]'),
        # a ledger whose columns disagree in length
        _deflated(b'["c",0,"0",[null,null,null],[],null,null,null,[[1,2],[5],[],[],[],[]],[],[]]'),
        _deflated(orjson.dumps(["c"] * 10))[:-3],  # truncated
        # the score element: null is never written, nor a thirteenth element
        _deflated(WITHOUT_FEEDBACK[:-1] + b",null]"),
        _deflated(WITHOUT_FEEDBACK[:-1] + b',[0,"f-1"]]'),
        _deflated(WITHOUT_FEEDBACK[:-1] + b',[0,"f-1",9],[0,"f-2",9]]'),
        # the first category: all three entries or none, never null
        _deflated(_with_firsts(b',"books"')),
        _deflated(_with_firsts(b',"books",0')),
        _deflated(_with_firsts(b",null,null,null")),
        _deflated(_with_firsts(b',"books",null,"o-1"')),
        _deflated(_with_firsts(b',"books",0,null')),
        _deflated(_with_firsts(b',"books",0,"o-1",0')),
        _deflated(b" " * (17 * 1024 * 1024)),  # inflates past MAX_BODY_BYTES
    ],
)
def test_unreadable_bytes_raise_codec_error(raw: bytes) -> None:
    with pytest.raises(CodecError):
        decode_state(raw)


def test_format_3_is_deflated_json_readable_with_zlib_alone() -> None:
    """Other languages can read states: raw deflate with the published dictionary."""
    raw = encode_state(new_state("c-1"))
    body = zlib.decompressobj(-12, zdict=ZDICT).decompress(raw[1:])
    assert orjson.loads(body)[0] == "c-1"


def test_a_repeated_order_key_is_refused() -> None:
    state = replay(
        [make_purchase(i, (i, Decimal(10), "SEK", None, None, [], None)) for i in range(2)]
    )
    body = orjson.loads(zlib.decompressobj(-12, zdict=ZDICT).decompress(encode_state(state)[1:]))
    keys = body[8][0]
    keys[1] = keys[0]
    with pytest.raises(CodecError, match="repeated order key"):
        decode_state(_deflated(orjson.dumps(body)))


def test_the_dictionary_earns_its_place() -> None:
    """A small state deflated against the preset dictionary is far smaller than
    deflated alone (most customers have one or two orders)."""
    order = (0, Decimal("123.45"), "EUR", Decimal("0.35"), "email", ["books"], None)
    state = replay([make_purchase(1, order)])
    raw = encode_state(state)
    body = zlib.decompressobj(-12, zdict=ZDICT).decompress(raw[1:])
    plain = zlib.compressobj(6, zlib.DEFLATED, -12, 8)
    assert len(raw) * 3 < (len(plain.compress(body)) + len(plain.flush())) * 2
