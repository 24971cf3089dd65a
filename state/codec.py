"""Byte encoding of ``CustomerState`` for the Redis-backed table.

The body is an orjson array of the fields in a fixed position.  Positional arrays
avoid repeating field names in every stored value; times are integer microseconds
since the Unix epoch (UTC) and money is a decimal string, so nothing is lost.  Maps
are written in sorted key order, which makes the encoding canonical: equal states
give equal bytes.  No pickle: the stored bytes never execute code and stay readable
by other languages (JSON, and zlib's raw deflate).

Format 1: byte ``0x01``, then the body as is.
Format 2 (written): byte ``0x02``, then the body raw-deflated (zlib level 6, 4 KiB
window) against the preset dictionary ``data/state-zdict-v2.txt``, a frozen sample
of encoded demo-shop states.  A typical state is ~480 bytes of JSON and ~150 bytes
deflated, which is most of what a customer costs in Redis and the changelog; the
dictionary is what makes deflate pay off on values this small (plain deflate saves
a third).  Costs ~12 us to encode and ~3 us to decode.  The dictionary is part of
format 2: a different one needs a new format byte.

``decode_state`` keeps reading every older format.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.resources import files
from typing import Any

import orjson

from state.customer import (
    CustomerState,
    DayAgg,
    Held,
    OrderEntry,
    SubscriptionState,
    recompute_floor,
)
from state.events import Scope

FORMAT_V1 = 1
FORMAT_V2 = 2
#: Preset deflate dictionary of format 2 (frozen with the format).
ZDICT_V2 = files("state").joinpath("data/state-zdict-v2.txt").read_bytes()
_WBITS = -12  # raw deflate, 4 KiB window: fits the dictionary, cheap to set up
_LEVEL = 6
#: Largest body decode_state inflates: far above a state at the ledger's order cap
#: (~120 KB), small enough that corrupt bytes cannot exhaust memory.
MAX_BODY_BYTES = 16 * 1024 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class CodecError(ValueError):
    """Stored bytes that this version cannot read."""


def _t(ts: datetime) -> int:
    return (ts - _EPOCH) // _US


def _ot(ts: datetime | None) -> int | None:
    return None if ts is None else _t(ts)


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _odt(us: int | None) -> datetime | None:
    return None if us is None else _dt(us)


def _od(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def encode_state(s: CustomerState) -> bytes:
    sub = s.subscription
    doc: list[Any] = [
        s.customer_id,
        s.version,
        s.orders,
        str(s.gross),
        str(s.net),
        str(s.margin),
        _ot(s.first_order_at),
        _ot(s.last_order_at),
        _ot(s.watermark),
        _ot(s.horizon),
        [s.channel, _ot(s.channel_at), s.channel_order],
        sorted(s.categories),
        None
        if sub is None
        else [
            sub.plan_id,
            sub.interval,
            str(sub.amount),
            _t(sub.charged_at),
            sub.order_id,
            _t(sub.started_at),
        ],
        _ot(s.subscription_ended_at),
        s.risk,
        [
            [
                oid,
                _t(e.occurred_at),
                e.currency,
                str(e.amount),
                str(e.margin_rate),
                str(e.net),
                str(e.margin),
                str(e.refunded),
                e.refund_seen,
            ]
            for oid, e in sorted(s.ledger.items())
        ],
        [[d, a.orders, str(a.net), str(a.margin)] for d, a in sorted(s.days.items())],
        [
            [
                oid,
                [
                    [
                        h.event_id,
                        _t(h.occurred_at),
                        None if h.amount is None else str(h.amount),
                        h.currency,
                        h.scope.value,
                        h.reason,
                    ]
                    for h in hs
                ],
            ]
            for oid, hs in sorted(s.pending.items())
        ],
        [[k, _t(t)] for k, t in sorted(s.seen.items())],
        [
            s.past_days,
            str(s.past_first_day_net),
            str(s.past_first_day_margin),
            _ot(s.past_first_at),
            _ot(s.past_last_at),
        ],
    ]
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, 8, zdict=ZDICT_V2)
    return bytes((FORMAT_V2,)) + packer.compress(orjson.dumps(doc)) + packer.flush()


def decode_state(raw: bytes) -> CustomerState:
    if not raw:
        raise CodecError("empty state value")
    try:
        if raw[0] == FORMAT_V2:
            body = _inflate(raw[1:])
        elif raw[0] == FORMAT_V1:
            body = raw[1:]
        else:
            raise CodecError(f"unknown state format {raw[0]}")
        return _decode_body(orjson.loads(body))
    except CodecError:
        raise
    except (
        orjson.JSONDecodeError,
        zlib.error,
        ValueError,
        TypeError,
        IndexError,
        ArithmeticError,
    ) as exc:
        raise CodecError(f"corrupt state value: {exc!r}") from exc


def _inflate(packed: bytes) -> bytes:
    unpacker = zlib.decompressobj(_WBITS, zdict=ZDICT_V2)
    body = unpacker.decompress(packed, MAX_BODY_BYTES)
    if unpacker.unconsumed_tail:
        raise CodecError(f"state body larger than {MAX_BODY_BYTES} bytes")
    if not unpacker.eof:
        raise CodecError("truncated state value")
    return body


def _decode_body(doc: list[Any]) -> CustomerState:
    (
        customer_id,
        version,
        orders,
        gross,
        net,
        margin,
        first_at,
        last_at,
        watermark,
        horizon,
        (channel, channel_at, channel_order),
        categories,
        sub,
        sub_ended,
        risk,
        ledger,
        days,
        pending,
        seen,
        (past_days, past_first_net, past_first_margin, past_first_at, past_last_at),
    ) = doc
    s = CustomerState(
        customer_id=customer_id,
        version=version,
        orders=orders,
        gross=Decimal(gross),
        net=Decimal(net),
        margin=Decimal(margin),
        first_order_at=_odt(first_at),
        last_order_at=_odt(last_at),
        watermark=_odt(watermark),
        horizon=_odt(horizon),
        channel=channel,
        channel_at=_odt(channel_at),
        channel_order=channel_order,
        categories=set(categories),
        subscription=None
        if sub is None
        else SubscriptionState(sub[0], sub[1], Decimal(sub[2]), _dt(sub[3]), sub[4], _dt(sub[5])),
        subscription_ended_at=_odt(sub_ended),
        risk=risk,
        ledger={
            oid: OrderEntry(
                _dt(t),
                cur,
                Decimal(amount),
                Decimal(rate),
                Decimal(e_net),
                Decimal(e_margin),
                Decimal(refunded),
                bool(refund_seen),
            )
            for oid, t, cur, amount, rate, e_net, e_margin, refunded, refund_seen in ledger
        },
        days={d: DayAgg(n, Decimal(a_net), Decimal(a_margin)) for d, n, a_net, a_margin in days},
        pending={
            oid: tuple(
                Held(eid, _dt(t), _od(amount), cur, Scope(scope), reason)
                for eid, t, amount, cur, scope, reason in hs
            )
            for oid, hs in pending
        },
        seen={k: _dt(t) for k, t in seen},
        past_days=past_days,
        past_first_day_net=Decimal(past_first_net),
        past_first_day_margin=Decimal(past_first_margin),
        past_first_at=_odt(past_first_at),
        past_last_at=_odt(past_last_at),
    )
    s.floor = recompute_floor(s)
    return s
