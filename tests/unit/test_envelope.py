"""Table values: state and owed outputs (state.envelope), and how the processor uses
them to recognise redeliveries of any age and to owe its outputs to the changelog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from processor_fixtures import processor, purchase

from ltv.insights import InsightsConfig
from state import envelope
from state.codec import CodecError, encode_state
from state.customer import new_state
from state.envelope import Output, Stored
from state.insights import Contribution, Valued
from streams.processing import Record

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
STATE = encode_state(new_state("c-1"))


def test_round_trip_with_outbox() -> None:
    outbox = (
        Output("update", b"c-1", b'{"version":1}'),
        Output("dead_letter", None, b"x" * 300),  # multi-byte lengths, no key
        Output("churn", b"", b"{}"),
    )
    raw = envelope.encode(STATE, outbox)
    assert envelope.decode(raw) == Stored(STATE, outbox)
    assert envelope.decode(envelope.without_outbox(raw)) == Stored(STATE)
    assert envelope.state_of(raw) == envelope.state_of(envelope.without_outbox(raw)) == STATE
    assert envelope.customer_state(raw) == new_state("c-1")


def test_round_trip_with_insights_sections() -> None:
    """Redis keeps the state and the valuation part; the contribution goes beside it."""
    outbox = (Output("update", b"c-1", b"{}"),)
    raw = envelope.encode(STATE, outbox, valued=b"[1,null,null]", contribution=b'{"n":1}')
    assert envelope.decode(raw) == Stored(STATE, outbox, b"[1,null,null]", b'{"n":1}')
    assert envelope.state_of(raw) == STATE and envelope.valued_of(raw) == b"[1,null,null]"
    kept, contribution = envelope.split_contribution(envelope.without_outbox(raw))
    assert contribution == b'{"n":1}'
    assert envelope.decode(kept) == Stored(STATE, valued=b"[1,null,null]")
    assert envelope.split_contribution(envelope.encode(STATE)) == (envelope.encode(STATE), None)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        STATE,  # a bare state: not a table value
        b"\xfe\x00\x00" + STATE,  # the layout before this one
        b"\xfd",  # header cut
        b"\xfd\x05abc",  # state shorter than its length
        envelope.encode(STATE) + b"\x09\x00\x00",  # unknown output kind
        envelope.encode(STATE, [Output("update", b"k", b"vv")])[:-1],
    ],
)
def test_unreadable_values_raise_codec_error(raw: bytes) -> None:
    with pytest.raises(CodecError):
        envelope.decode(raw)


@pytest.mark.parametrize("raw", [b"", STATE, b"\xfd", b"\xfd\x05abc", b"\xfd\xff"])
def test_a_value_whose_state_cannot_be_cut_out_raises_codec_error(raw: bytes) -> None:
    with pytest.raises(CodecError):
        envelope.state_of(raw)


def test_applied_event_owes_its_outputs() -> None:
    result = processor().handle("purchase", purchase(7, T0), None, T0)
    assert result.state is not None
    stored = envelope.decode(result.state)
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


def test_a_record_skipped_by_an_earlier_delivery_is_applied_whatever_its_offset() -> None:
    """Offset 9 was applied, offset 5 skipped: the ledger, not the offset, decides."""
    p = processor()
    stored = p.handle("purchase", purchase(9, T0), None, T0).state
    assert stored is not None
    result = p.handle("purchase", purchase(5, T0 - timedelta(days=1)), stored, T0)
    assert result.outcome == "applied" and result.state is not None
    state = envelope.customer_state(result.state)
    assert (state.version, state.orders) == (2, 2)
    assert result.outputs[0].kind == "update"


def test_an_event_years_older_than_the_rest_is_applied_and_its_replay_dropped() -> None:
    p = processor()
    later = T0 + timedelta(days=3 * 365)
    stored = p.handle("purchase", purchase(1, later), None, later).state
    result = p.handle("purchase", purchase(0, T0), stored, later)
    assert result.outcome == "applied" and result.dead_letter_codes == []
    assert result.state is not None
    state = envelope.customer_state(result.state)
    assert (state.orders, state.first_order_at) == (2, T0)
    replay = p.handle("purchase", purchase(0, T0), result.state, later)
    assert (replay.outcome, replay.outputs) == ("duplicate", [])


def test_a_dead_letter_writes_nothing_and_its_redelivery_is_dead_lettered_again() -> None:
    """At-least-once for dead letters: nothing remembers them, a replay derives them anew."""
    p = processor()
    stored = p.handle("purchase", purchase(0, T0), None, T0).state
    assert stored is not None
    bad = Record("orders.purchases", 0, 5, b"c-1", orjson.dumps({"customer_id": "c-1"}))
    result = p.handle("purchase", bad, stored, T0)
    assert result.dead_letter_codes == ["schema"] and result.state is None
    later = p.handle("purchase", purchase(6, T0), stored, T0).state
    assert later is not None
    again = p.handle("purchase", bad, later, T0)
    assert again.dead_letter_codes == ["schema"] and again.outputs == result.outputs


def test_a_dead_letter_of_an_unknown_key_writes_nothing() -> None:
    bad = Record("orders.purchases", 0, 5, b"c-new", b"not json")
    result = processor().handle("purchase", bad, None, T0)
    assert result.dead_letter_codes == ["invalid_json"] and result.state is None


def test_a_write_carries_its_contribution_and_a_held_write_the_last_valuation() -> None:
    cfg = InsightsConfig()
    p = processor(cfg)
    first = p.handle("purchase", purchase(7, T0), None, T0)
    assert first.state is not None and first.valuation is not None
    stored = envelope.decode(first.state)
    assert stored.valued is not None and stored.contribution is not None
    assert Valued.decode(stored.valued) == Valued.of(first.valuation)
    state = envelope.customer_state(first.state)
    assert Contribution.decode(stored.contribution) == Contribution.of(
        state, first.valuation, cfg, "unknown"
    )
    # A cancellation of an order that has not come is held: no update, no revaluation.
    held_cancel = Record(
        "orders.cancellations",
        0,
        3,
        b"c-1",
        orjson.dumps(
            {
                "event_id": "x-1",
                "order_id": "o-never",
                "customer_id": "c-1",
                "occurred_at": T0.isoformat(),
            }
        ),
    )
    held = p.handle("cancellation", held_cancel, envelope.without_outbox(first.state), T0)
    assert held.outcome == "held" and held.state is not None and held.valuation is None
    assert envelope.valued_of(held.state) == stored.valued
    assert envelope.decode(held.state).contribution == stored.contribution


def test_without_insights_a_value_carries_no_sections() -> None:
    result = processor().handle("purchase", purchase(7, T0), None, T0)
    assert result.state is not None
    stored = envelope.decode(result.state)
    assert (stored.valued, stored.contribution) == (None, None)
