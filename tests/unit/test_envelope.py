"""Table values: state, input offsets and owed outputs (state.envelope), and how the
processor uses them to recognise redeliveries and to owe its outputs to the changelog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from processor_fixtures import processor, purchase

from state import envelope
from state.codec import CodecError, encode_state
from state.customer import new_state
from state.envelope import NO_OFFSETS, Offsets, Output, Stored
from streams.processing import Record

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
STATE = encode_state(new_state("c-1"))


def test_round_trip_with_offsets_and_outbox() -> None:
    outbox = (
        Output("update", b"c-1", b'{"version":1}'),
        Output("dead_letter", None, b"x" * 300),  # multi-byte lengths, no key
        Output("churn", b"", b"{}"),
    )
    raw = envelope.encode(STATE, Offsets(0, 2**40), outbox)
    assert envelope.decode(raw) == Stored(STATE, Offsets(0, 2**40), outbox)
    assert envelope.decode(envelope.without_outbox(raw)) == Stored(STATE, Offsets(0, 2**40))
    assert envelope.customer_state(raw) == new_state("c-1")


def test_a_bare_state_is_a_value_with_no_offsets_and_nothing_owed() -> None:
    """What versions before the envelope stored stays readable."""
    assert envelope.decode(STATE) == Stored(STATE, NO_OFFSETS, ())


@pytest.mark.parametrize(
    "raw",
    [
        b"\xfe",  # header cut
        b"\xfe\x00\x00\x05abc",  # state shorter than its length
        envelope.encode(STATE, NO_OFFSETS) + b"\x09\x00\x00",  # unknown output kind
        envelope.encode(STATE, NO_OFFSETS, [Output("update", b"k", b"vv")])[:-1],
    ],
)
def test_corrupt_values_raise_codec_error(raw: bytes) -> None:
    with pytest.raises(CodecError):
        envelope.decode(raw)


def test_applied_event_owes_its_outputs_and_advances_the_offset() -> None:
    result = processor().handle("purchase", purchase(7, T0), None, T0)
    assert result.state is not None
    stored = envelope.decode(result.state)
    assert stored.offsets == Offsets(purchase=7)
    assert stored.outbox == tuple(result.outputs)
    assert [o.kind for o in stored.outbox] == ["update", "churn"]


def test_a_redelivered_record_is_a_duplicate_even_when_owed_outputs_were_lost() -> None:
    """kill -9 after the changelog ack, before the output ack: the replay is a no-op,
    and the outputs are still owed by the recovered value (resent by the store)."""
    p = processor()
    first = p.handle("purchase", purchase(7, T0), None, T0)
    assert first.state is not None
    replay = p.handle("purchase", purchase(7, T0), first.state, T0)
    assert (replay.outcome, replay.state, replay.outputs) == ("duplicate", None, [])
    assert envelope.decode(first.state).outbox == tuple(first.outputs)


def test_a_redelivered_record_new_to_the_ledger_is_applied() -> None:
    """An earlier delivery skipped offset 5 but applied offset 9: the redelivery of 5
    lies below the folded offset, yet the ledger does not know it, so it is applied
    (trusting the offset would lose it for good)."""
    p = processor()
    stored = p.handle("purchase", purchase(9, T0), None, T0).state
    assert stored is not None
    result = p.handle("purchase", purchase(5, T0 - timedelta(days=1)), stored, T0)
    assert result.outcome == "applied" and result.state is not None
    value = envelope.decode(result.state)
    assert value.offsets == Offsets(purchase=9)  # never moves backwards
    state = envelope.customer_state(result.state)
    assert (state.version, state.orders) == (2, 2)
    assert result.outputs[0].kind == "update"


def test_replay_of_an_event_compacted_out_of_the_ledger_is_a_duplicate_not_late() -> None:
    p = processor()
    stored = p.handle("purchase", purchase(0, T0), None, T0).state
    later = T0 + timedelta(days=200)  # moves the 90-day horizon past the first order
    stored = p.handle("purchase", purchase(1, later), stored, later).state
    assert stored is not None and "o-0" not in envelope.customer_state(stored).ledger
    replay = p.handle("purchase", purchase(0, T0), stored, later)
    assert (replay.outcome, replay.outputs) == ("duplicate", [])
    # A *new* record that old (higher offset) is still a late event.
    old = Record("orders.purchases", 0, 2, b"c-1", purchase(0, T0).value.replace(b"o-0", b"o-9"))
    late = p.handle("purchase", old, stored, later)
    assert late.dead_letter_codes == ["late_event"]


def test_a_dead_letter_writes_nothing_and_its_redelivery_is_dead_lettered_again() -> None:
    """At-least-once for dead letters: nothing remembers them, a replay derives them anew."""
    p = processor()
    stored = p.handle("purchase", purchase(0, T0), None, T0).state
    assert stored is not None
    bad = Record("orders.purchases", 0, 5, b"c-1", orjson.dumps({"customer_id": "c-1"}))
    result = p.handle("purchase", bad, stored, T0)
    assert result.dead_letter_codes == ["schema"] and result.state is None
    later = p.handle("purchase", purchase(6, T0), stored, T0).state
    assert later is not None and envelope.decode(later).offsets == Offsets(purchase=6)
    again = p.handle("purchase", bad, later, T0)
    assert again.dead_letter_codes == ["schema"] and again.outputs == result.outputs


def test_a_dead_letter_of_an_unknown_key_writes_nothing() -> None:
    bad = Record("orders.purchases", 0, 5, b"c-new", b"not json")
    result = processor().handle("purchase", bad, None, T0)
    assert result.dead_letter_codes == ["invalid_json"] and result.state is None


def test_offsets_are_per_input_topic() -> None:
    p = processor()
    stored = p.handle("purchase", purchase(9, T0), None, T0).state
    assert stored is not None
    cancel = {
        "event_id": "x-1",
        "order_id": "o-9",
        "customer_id": "c-1",
        "occurred_at": (T0 + timedelta(days=1)).isoformat(),
        "scope": "order",
    }
    record = Record("orders.cancellations", 0, 3, b"c-1", orjson.dumps(cancel))
    result = p.handle("cancellation", record, stored, T0)
    assert result.outcome == "applied" and result.state is not None
    assert envelope.decode(result.state).offsets == Offsets(purchase=9, cancellation=3)
