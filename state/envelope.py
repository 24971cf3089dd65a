"""What the ``customers`` table stores per key: the state and its owed outputs.

Next to the encoded ``CustomerState`` sits the ``outbox``: the output records
(``ltv.updates``, ``ltv.churn-risk``, dead letters) that the write producing
this value owes downstream. The value reaches the changelog before its
outputs are acknowledged; when a worker dies in between, the redelivered
input is a duplicate by the customer's ledger and publishes nothing.
Recovery re-sends the outbox of every changelog record it restores instead
(a transactional outbox), so the update is published at least once. Redis
keeps the value without its outbox.

Layout: byte ``0xFD``, then unsigned LEB128 varint ``len(state)``, the state
bytes (``state.codec``), then per output: kind byte, ``len(key) + 1`` (0: no
key), key, ``len(value)``, value. Any other first byte is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from state.codec import CodecError, decode_state
from state.customer import CustomerState

MARKER = 0xFD

OutputKind = Literal["update", "churn", "dead_letter"]
_KIND_BYTES: dict[OutputKind, int] = {"update": 1, "churn": 2, "dead_letter": 3}
_KINDS: dict[int, OutputKind] = {b: k for k, b in _KIND_BYTES.items()}


@dataclass(frozen=True, slots=True)
class Output:
    """One record to publish: which output topic, its key and its JSON value."""

    kind: OutputKind
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class Stored:
    """A decoded table value."""

    state: bytes
    outbox: tuple[Output, ...] = ()


def encode(state: bytes, outbox: Sequence[Output] = ()) -> bytes:
    out = bytearray((MARKER,))
    _varint(out, len(state))
    out += state
    for output in outbox:
        out.append(_KIND_BYTES[output.kind])
        if output.key is None:
            _varint(out, 0)
        else:
            _varint(out, len(output.key) + 1)
            out += output.key
        _varint(out, len(output.value))
        out += output.value
    return bytes(out)


def decode(raw: bytes) -> Stored:
    """Split a table value; raises ``CodecError`` on bytes this version cannot read."""
    _check_marker(raw)
    try:
        size, pos = _read_varint(raw, 1)
        state = _take(raw, pos, size)
        pos += size
        outbox: list[Output] = []
        while pos < len(raw):
            kind = _KINDS[raw[pos]]
            key_size, pos = _read_varint(raw, pos + 1)
            key = None if key_size == 0 else _take(raw, pos, key_size - 1)
            pos += max(key_size - 1, 0)
            value_size, pos = _read_varint(raw, pos)
            value = _take(raw, pos, value_size)
            pos += value_size
            outbox.append(Output(kind, key, value))
    except (IndexError, KeyError) as exc:
        raise CodecError(f"corrupt table value: {exc!r}") from exc
    return Stored(state, tuple(outbox))


def customer_state(raw: bytes) -> CustomerState:
    """The decoded state of a table value (what readers of Redis or the changelog want)."""
    return decode_state(decode(raw).state)


def without_outbox(raw: bytes) -> bytes:
    """The value as Redis keeps it: the outbox is only needed in the changelog.

    Cuts after the state without parsing the outputs (called on every write).
    """
    end = _state_span(raw)[1]
    return raw if end == len(raw) else raw[:end]


def state_of(raw: bytes) -> bytes:
    """The encoded state of a table value, without parsing its outbox (the hot path's read)."""
    start, end = _state_span(raw)
    return raw[start:end]


def _state_span(raw: bytes) -> tuple[int, int]:
    """Where the state of a table value starts and ends (checked to lie within ``raw``)."""
    _check_marker(raw)
    try:
        size, pos = _read_varint(raw, 1)
    except IndexError as exc:
        raise CodecError(f"corrupt table value: {exc!r}") from exc
    end = pos + size
    if end > len(raw):
        raise CodecError(f"corrupt table value: state runs past the end ({len(raw)})")
    return pos, end


def _check_marker(raw: bytes) -> None:
    if not raw or raw[0] != MARKER:
        head = raw[:1].hex() or "empty"
        raise CodecError(f"not a table value of this version (first byte {head})")


def _varint(out: bytearray, n: int) -> None:
    if n < 0:
        raise ValueError(f"varint of a negative number {n}")
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        byte = raw[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return n, pos
        shift += 7
        if shift > 63:
            raise IndexError("varint longer than 64 bits")


def _take(raw: bytes, pos: int, size: int) -> bytes:
    if pos + size > len(raw):
        raise IndexError(f"{size} bytes at {pos} run past the end ({len(raw)})")
    return raw[pos : pos + size]
