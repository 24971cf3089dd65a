"""NPS input (customers.feedback, docs/input-events.md): decoding, the customer's
NPS class, and what the processor stores and publishes for each answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from processor_fixtures import feedback, processor, purchase

from state import envelope
from state.customer import StateConfig, apply_feedback, new_state
from state.events import ErrorCode, EventError, Feedback, decode_feedback
from state.fx import load_fx_table
from streams.processing import Processor, Record, Result

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
NOW = T0 + timedelta(days=30)
ANSWER: dict[str, Any] = {
    "event_id": "f-1",
    "customer_id": "c-42",
    "occurred_at": "2026-11-22T08:30:00+01:00",
    "score": 9,
    "comment": "Fast delivery.",
}


def answer(**changes: Any) -> bytes:
    doc = {**ANSWER, **changes}
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...})


def test_the_design_example_decodes() -> None:
    f = decode_feedback(answer())
    assert (f.score, f.comment) == (9, "Fast delivery.")
    assert f.occurred_at == datetime(2026, 11, 22, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "change",
    [
        {"score": 0},
        {"score": 10},
        {"comment": ...},
        {"comment": None},
        {"comment": ""},
        {"comment": "x" * 1000},
        {"occurred_at": "2026-11-22 08:30:00.123456789z"},
        {"unknown_field": {"producers": "may add fields"}},
    ],
)
def test_answers_the_decoder_accepts(change: dict[str, Any]) -> None:
    assert isinstance(decode_feedback(answer(**change)), Feedback)


@pytest.mark.parametrize(
    "change",
    [
        {"score": -1},
        {"score": 11},
        {"score": True},
        {"score": 9.0},
        {"score": 9.5},
        {"score": "9"},
        {"score": None},
        {"score": ...},
        {"comment": "x" * 1001},
        {"comment": 5},
        {"event_id": ""},
        {"event_id": 17},
        {"customer_id": "c\n42"},
        {"customer_id": ...},
        {"occurred_at": "2026-11-22T08:30:00"},
        {"occurred_at": ...},
    ],
)
def test_answers_the_decoder_refuses_are_schema_errors(change: dict[str, Any]) -> None:
    with pytest.raises(EventError) as info:
        decode_feedback(answer(**change))
    assert info.value.code is ErrorCode.SCHEMA


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", ErrorCode.INVALID_JSON),
        (b"[9]", ErrorCode.SCHEMA),
        (b" " * 2000, ErrorCode.TOO_LARGE),
    ],
)
def test_unreadable_answers_get_the_codes_of_the_other_inputs(raw: bytes, code: ErrorCode) -> None:
    with pytest.raises(EventError) as info:
        decode_feedback(raw, max_bytes=1024)
    assert info.value.code is code


@pytest.mark.parametrize(
    ("score", "nps"),
    [
        (0, "detractor"),
        (6, "detractor"),
        (7, "passive"),
        (8, "passive"),
        (9, "promoter"),
        (10, "promoter"),
    ],
)
def test_the_class_of_a_score(score: int, nps: str) -> None:
    f = decode_feedback(answer(customer_id="c", score=score))
    state = apply_feedback(new_state("c"), f, StateConfig(fx=load_fx_table(None, "USD"))).state
    assert state.nps_class == nps


def test_a_customer_without_feedback_is_unknown() -> None:
    assert new_state("c").nps_class == "unknown"


# ------------------------------------------------------------------------ the processor


def updates(result: Result) -> list[dict[str, Any]]:
    return [orjson.loads(o.value) for o in result.outputs if o.kind == "update"]


class Customer:
    """One customer's stored value, fed records as the unit of work would."""

    def __init__(self) -> None:
        self.proc: Processor = processor()
        self.stored: bytes | None = None

    def handle(self, kind: Any, record: Any) -> Result:
        result = self.proc.handle(kind, record, self.stored, NOW)
        if result.state is not None:
            self.stored = result.state
        return result


def test_a_first_answer_classes_the_customer_and_publishes_one_full_update() -> None:
    customer = Customer()
    customer.handle("purchase", purchase(1, T0))
    result = customer.handle("feedback", feedback("f-1", T0 + timedelta(days=1), 10))
    assert result.outcome == "applied"
    (update,) = updates(result)
    assert update["cause"] == {"type": "feedback", "event_id": "f-1"}
    assert update["version"] == 2 and update["nps_class"] == "promoter"
    assert update["orders"] == 1 and update["net_revenue"] == "50.00"  # a full update
    assert customer.stored is not None
    assert envelope.customer_state(customer.stored).nps_class == "promoter"


def test_a_purchase_update_carries_the_class() -> None:
    customer = Customer()
    (first,) = updates(customer.handle("purchase", purchase(1, T0)))
    assert first["nps_class"] == "unknown"
    customer.handle("feedback", feedback("f-1", T0, 3))
    (later,) = updates(customer.handle("purchase", purchase(2, T0 + timedelta(days=3))))
    assert (later["version"], later["nps_class"]) == (3, "detractor")


def test_a_newer_answer_changes_the_class() -> None:
    customer = Customer()
    customer.handle("feedback", feedback("f-1", T0, 3))
    (update,) = updates(customer.handle("feedback", feedback("f-2", T0 + timedelta(hours=1), 8)))
    assert (update["version"], update["nps_class"]) == (2, "passive")


def test_an_older_answer_keeps_the_class_but_takes_a_version() -> None:
    customer = Customer()
    customer.handle("feedback", feedback("f-2", T0 + timedelta(hours=1), 8))
    result = customer.handle("feedback", feedback("f-1", T0, 3))
    (update,) = updates(result)
    assert update["cause"] == {"type": "feedback", "event_id": "f-1"}
    assert (update["version"], update["nps_class"]) == (2, "passive")


def test_answers_at_the_same_moment_are_ordered_by_event_id() -> None:
    for order in (("f-a", "f-b"), ("f-b", "f-a")):
        customer = Customer()
        scores = {"f-a": 10, "f-b": 0}
        for event_id in order:
            result = customer.handle("feedback", feedback(event_id, T0, scores[event_id]))
        assert updates(result)[0]["nps_class"] == "detractor"  # f-b is the latest


def test_a_redelivered_answer_changes_and_publishes_nothing() -> None:
    customer = Customer()
    customer.handle("feedback", feedback("f-1", T0, 9))
    stored = customer.stored
    result = customer.handle("feedback", feedback("f-1", T0, 9))
    assert result.outcome == "duplicate"
    assert result.outputs == [] and result.state is None
    assert customer.stored == stored


def test_an_answer_may_reuse_a_cancellation_event_id() -> None:
    """Each input deduplicates its own event ids (docs/input-events.md)."""
    customer = Customer()
    customer.handle("purchase", purchase(1, T0))
    cancellation = {
        "event_id": "x-1",
        "order_id": "o-1",
        "customer_id": "c-1",
        "occurred_at": T0.isoformat(),
        "amount": "10.00",
    }
    record = Record("orders.cancellations", 0, 0, b"c-1", orjson.dumps(cancellation))
    assert customer.handle("cancellation", record).outcome == "applied"
    result = customer.handle("feedback", feedback("x-1", T0, 9))
    assert result.outcome == "applied" and updates(result)[0]["version"] == 3


def test_an_answer_keyed_by_another_customer_is_dead_lettered() -> None:
    customer = Customer()
    result = customer.handle("feedback", feedback("f-1", T0, 9, key="someone-else"))
    assert result.outcome == "dead_letter" and result.state is None
    (letter,) = [orjson.loads(o.value) for o in result.outputs]
    assert letter["error"]["code"] == "key_mismatch"
    assert letter["source_topic"] == "customers.feedback"


def test_an_answer_past_the_customer_limit_is_dead_lettered() -> None:
    proc = processor()
    proc.state_cfg = StateConfig(fx=proc.state_cfg.fx, max_events=1)
    stored = proc.handle("feedback", feedback("f-1", T0, 9), None, NOW).state
    result = proc.handle("feedback", feedback("f-2", T0, 1), stored, NOW)
    assert result.dead_letter_codes == ["customer_limit"]
    assert [o.kind for o in result.outputs] == ["dead_letter"]
