"""Byte encoding of ``CustomerState`` for the Redis-backed table.

The body is an orjson array of the fields in a fixed position.  Positional arrays
avoid repeating field names in every stored value; times are integer microseconds
since the Unix epoch (UTC) and money is a decimal string, so nothing is lost.  Sets
and maps are written in a fixed order, which makes the encoding canonical: equal
states give equal bytes.  No pickle: the stored bytes never execute code and stay
readable by other languages (JSON, and zlib's raw deflate).

The ledger, which holds the customer's whole order history, is written in
columns sorted by order time: the 64-bit id hashes, the times as deltas from the
previous order, the currencies and margin rates run-length encoded, the amounts,
and a sparse list of the orders a refund touched (or whose net value is not
simply ``amount - refunded``).  Only what cannot be derived is stored: each
order's margin, the orders and purchase days and every running total but
``gross`` are rebuilt on decode (``state.customer.recount``).  About 20 bytes an
order once deflated.

The latest NPS score is an optional twelfth element ``[time, event id,
score]``, written only when the customer has one: a state without feedback
encodes exactly as before it existed, so values written before it still decode,
and each state still has one encoding (no ``null`` placeholder is written or
read).  The feedback comment is not stored.

The fourth element holds what the customer's earliest orders decide:
``[channel, channel time, channel order id]``, and, only when the customer has
a first category, three more entries ``first category, time, order id`` (six
in all).  Extending this element rather than adding a thirteenth keeps the
two optional parts independent: a state may have a first category with or
without a score, and neither needs a ``null`` in the other's place (a
trailing element could only be told from the score by its contents).  A state
without a first category encodes exactly as before it was kept, so older
values decode unchanged; an older value with categories no longer knows which
order carried them, and its first category stays unknown
(``state.customer.apply_purchase``).  Three entries or six, and six only with
all three set: anything else is refused.

Format 3: byte ``0x03``, then the body raw-deflated (4 KiB window)
against the preset dictionary ``data/state-zdict-v3.txt``, a frozen sample of
encoded demo-shop states (``bench/zdict.py`` made it).  The dictionary is what
makes deflate pay off on values this small; it is part of format 3, so a
different one needs a new format byte.  Other format bytes are refused.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.resources import files
from itertools import accumulate, pairwise
from typing import Any

import orjson

from state.customer import (
    CustomerState,
    Held,
    OrderEntry,
    Score,
    SubscriptionState,
    margin_of,
    recount,
)
from state.events import Scope

FORMAT = 3
#: Preset deflate dictionary of format 3 (frozen with the format).
ZDICT = files("state").joinpath("data/state-zdict-v3.txt").read_bytes()
_WBITS = -12  # raw deflate, 4 KiB window: fits the dictionary, cheap to set up
_LEVEL = 6
# A small match-finder hash (16 KiB, not zlib's default 128 KiB): the same
# sizes on bodies of a few hundred bytes, and far less memory to set up per value.
_MEM_LEVEL = 4
#: A compressor with the preset dictionary loaded; each value deflates with a
#: copy of it, which skips hashing the dictionary again.
_PRIMED = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zdict=ZDICT)
#: Largest body decode_state inflates: far above a state at the per-customer cap
#: (~400 KB), small enough that corrupt bytes cannot exhaust memory.
MAX_BODY_BYTES = 16 * 1024 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_ZERO = Decimal(0)


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


def _runs(values: list[str]) -> list[Any]:
    """Run-length encode: ``[value, count, value, count, ...]``."""
    out: list[Any] = []
    for v in values:
        if out and out[-2] == v:
            out[-1] += 1
        else:
            out += [v, 1]
    return out


def _unruns(runs: list[Any]) -> list[str]:
    return [v for v, n in zip(runs[::2], runs[1::2], strict=True) for _ in range(n)]


def _ledger_columns(ledger: dict[int, OrderEntry]) -> list[Any]:
    rows = sorted(ledger.items(), key=lambda kv: (kv[1].occurred_at, kv[0]))
    times = [_t(e.occurred_at) for _, e in rows]
    extras: list[Any] = []
    for i, (_, e) in enumerate(rows):
        derived = e.net == e.amount - e.refunded
        if e.refund_seen or not derived:
            extras.append(
                [i, str(e.refunded) if e.refund_seen else None, None if derived else str(e.net)]
            )
    return [
        [k for k, _ in rows],
        [b - a for a, b in pairwise([0, *times])],
        _runs([e.currency for _, e in rows]),
        [str(e.amount) for _, e in rows],
        _runs([str(e.margin_rate) for _, e in rows]),
        extras,
    ]


def _ledger_of(columns: list[Any]) -> dict[int, OrderEntry]:
    keys, deltas, currency_runs, amounts, rate_runs, extras = columns
    touched = {i: (refunded, net) for i, refunded, net in extras}
    rates = {text: Decimal(text) for text in rate_runs[::2]}
    ledger: dict[int, OrderEntry] = {}
    # The hot loop of decoding a long history: no per-order helper calls.
    for i, (key, us, currency, amount_text, rate_text) in enumerate(
        zip(
            keys,
            accumulate(deltas),
            _unruns(currency_runs),
            amounts,
            _unruns(rate_runs),
            strict=True,
        )
    ):
        amount, rate = Decimal(amount_text), rates[rate_text]
        at = _EPOCH + timedelta(microseconds=us)
        if i in touched:
            refunded_text, net_text = touched[i]
            refunded = _ZERO if refunded_text is None else Decimal(refunded_text)
            net = amount - refunded if net_text is None else Decimal(net_text)
            entry = OrderEntry(
                at,
                currency,
                amount,
                rate,
                net,
                margin_of(net, rate),
                refunded,
                refunded_text is not None,
            )
        else:
            entry = OrderEntry(at, currency, amount, rate, amount, margin_of(amount, rate))
        ledger[key] = entry
    if len(ledger) != len(keys):
        raise CodecError("corrupt state value: repeated order key")
    return ledger


def encode_state(s: CustomerState) -> bytes:
    return bytes((FORMAT,)) + deflate(encode_body(s))


def deflate(body: bytes) -> bytes:
    """A state body raw-deflated against the preset dictionary (format 3)."""
    packer = _PRIMED.copy()
    return packer.compress(body) + packer.flush()


def encode_body(s: CustomerState) -> bytes:
    """The state's JSON body before deflate (what the preset dictionary samples)."""
    sub = s.subscription
    firsts: list[Any] = [s.channel, _ot(s.channel_at), s.channel_order]
    if s.first_category is not None:
        firsts += [s.first_category, _ot(s.first_category_at), s.first_category_order]
    doc: list[Any] = [
        s.customer_id,
        s.version,
        str(s.gross),
        firsts,
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
        _ledger_columns(s.ledger),
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
                        int(h.notified),
                    ]
                    for h in hs
                ],
            ]
            for oid, hs in sorted(s.pending.items())
        ],
        sorted(s.seen),
    ]
    if s.score is not None:
        doc.append([_t(s.score.occurred_at), s.score.event_id, s.score.score])
    return orjson.dumps(doc)


def decode_state(raw: bytes) -> CustomerState:
    if not raw:
        raise CodecError("empty state value")
    if raw[0] != FORMAT:
        raise CodecError(f"unknown state format {raw[0]} (this version reads {FORMAT})")
    try:
        return _decode_body(orjson.loads(_inflate(raw[1:])))
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
    unpacker = zlib.decompressobj(_WBITS, zdict=ZDICT)
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
        gross,
        (channel, channel_at, channel_order, *first_category),
        categories,
        sub,
        sub_ended,
        risk,
        ledger,
        pending,
        seen,
        *rest,
    ) = doc
    if len(rest) > 1:
        raise CodecError(f"corrupt state value: {len(doc)} elements")
    score = None
    if rest:
        at, event_id, value = rest[0]
        score = Score(_dt(at), event_id, value)
    category, category_at, category_order = first_category or (None, None, None)
    # Written only with all three set: a null among them is a second encoding.
    if first_category and not (
        isinstance(category, str)
        and isinstance(category_at, int)
        and isinstance(category_order, str)
    ):
        raise CodecError(f"corrupt state value: first category {first_category!r}")
    s = CustomerState(
        customer_id=customer_id,
        version=version,
        gross=Decimal(gross),
        channel=channel,
        channel_at=_odt(channel_at),
        channel_order=channel_order,
        first_category=category,
        first_category_at=_odt(category_at),
        first_category_order=category_order,
        categories=set(categories),
        subscription=None
        if sub is None
        else SubscriptionState(sub[0], sub[1], Decimal(sub[2]), _dt(sub[3]), sub[4], _dt(sub[5])),
        subscription_ended_at=_odt(sub_ended),
        risk=risk,
        score=score,
        ledger=_ledger_of(ledger),
        pending={
            oid: tuple(
                Held(eid, _dt(t), _od(amount), cur, Scope(scope), reason, bool(notified))
                for eid, t, amount, cur, scope, reason, notified in hs
            )
            for oid, hs in pending
        },
        seen=set(seen),
    )
    recount(s)
    return s
