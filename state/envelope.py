"""What the ``customers`` table stores per key: the state, its insights, its owed outputs.

Next to the encoded ``CustomerState`` sits the ``outbox``: the output records
(``ltv.updates``, ``ltv.churn-risk``, dead letters) that the write producing
this value owes downstream. The value reaches the changelog before its
outputs are acknowledged; when a worker dies in between, the redelivered
input is a duplicate by the customer's ledger and publishes nothing.
Recovery re-sends the outbox of every changelog record it restores instead
(a transactional outbox), so the update is published at least once. Redis
keeps the value without its outbox.

Two optional sections sit between the state and its outbox, for the live
group aggregates (``state.insights``, docs/insights.md):

* ``valued``: the parts of the last published valuation the aggregates read
  (``Valued.encode``, a few dozen bytes). Redis keeps it with the state, so a
  later write that does not revalue the customer contributes the same
  predicted LTV, segment and risk as before.
* ``contribution``: what the customer adds to its partition's sums
  (``Contribution.encode``). It travels in the changelog, so recovery restores
  exactly the contribution that was computed; the store keeps it beside the
  data (``state.store.sums``) instead of in the value.

Layout: byte ``0xFD``, then unsigned LEB128 varint ``len(state)``, the state
bytes (``state.codec``); then, each optional, section byte 4 and the
length-prefixed ``valued``, section byte 5 and the length-prefixed
``contribution``; then per output: kind byte, ``len(key) + 1`` (0: no key),
key, ``len(value)``, value. Any other first byte is refused.
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
_VALUED = 4
_CONTRIBUTION = 5


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
    valued: bytes | None = None
    contribution: bytes | None = None


def encode(
    state: bytes,
    outbox: Sequence[Output] = (),
    *,
    valued: bytes | None = None,
    contribution: bytes | None = None,
) -> bytes:
    out = bytearray((MARKER,))
    _varint(out, len(state))
    out += state
    for kind, section in ((_VALUED, valued), (_CONTRIBUTION, contribution)):
        if section is not None:
            out.append(kind)
            _varint(out, len(section))
            out += section
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
        (valued, contribution), pos = _sections(raw, pos)
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
    return Stored(state, tuple(outbox), valued, contribution)


def customer_state(raw: bytes) -> CustomerState:
    """The decoded state of a table value (what readers of Redis or the changelog want)."""
    return decode_state(decode(raw).state)


def without_outbox(raw: bytes) -> bytes:
    """The value without its outbox, which is only needed in the changelog.

    Cuts before the first output without parsing the outputs (called on every write).
    """
    end = _sections(raw, _state_span(raw)[1])[1]
    return raw if end == len(raw) else raw[:end]


def split_contribution(raw: bytes) -> tuple[bytes, bytes | None]:
    """The value as Redis keeps it (state and ``valued``, no outbox) and its contribution."""
    start = _state_span(raw)[1]
    (valued, contribution), _ = _sections(raw, start)
    if valued is not None:
        out = bytearray(raw[:start])
        out.append(_VALUED)
        _varint(out, len(valued))
        out += valued
        return bytes(out), contribution
    return raw[:start], contribution


def valued_of(raw: bytes) -> bytes | None:
    """The ``valued`` section of a table value (None: never valued)."""
    return _sections(raw, _state_span(raw)[1])[0][0]


def _sections(raw: bytes, pos: int) -> tuple[tuple[bytes | None, bytes | None], int]:
    """The ``valued`` and ``contribution`` sections at ``pos``, and where the outbox starts."""
    found: dict[int, bytes] = {}
    try:
        for kind in (_VALUED, _CONTRIBUTION):
            if pos < len(raw) and raw[pos] == kind:
                size, pos = _read_varint(raw, pos + 1)
                found[kind] = _take(raw, pos, size)
                pos += size
    except IndexError as exc:
        raise CodecError(f"corrupt table value: {exc!r}") from exc
    return (found.get(_VALUED), found.get(_CONTRIBUTION)), pos


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
