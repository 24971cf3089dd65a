"""streams.acks: only records an agent handled may move the committed offset."""

from __future__ import annotations

from collections.abc import Iterator

import faust
import pytest
from faust.types import TP, Message

from streams import acks

TOPIC = "orders.purchases"


def message(offset: int, topic: str = TOPIC, partition: int = 0) -> Message:
    return Message(
        topic, partition, offset, 0.0, 0, None, b"k", b"v", None, tp=TP(topic, partition)
    )


@pytest.fixture
def consumer() -> Iterator[acks.GuardedConsumer]:
    app = faust.App("t-acks", broker="kafka://127.0.0.1:1", autodiscover=False)
    app.transport = acks.Transport(app.conf.broker_consumer, app)
    # The conductor fills this when it subscribes to the agents' topics (at start).
    app.topics._acking_topics.add(TOPIC)  # type: ignore[attr-defined]
    acks.handled_records(app).guard([TOPIC])
    guarded = app.consumer
    assert isinstance(guarded, acks.GuardedConsumer)
    yield guarded


def test_registry_admits_marked_records_once_and_unguarded_topics_always() -> None:
    handled = acks.HandledRecords()
    handled.guard([TOPIC])
    handled.mark([message(1), message(2)])
    assert handled.admits(message(1)) and handled.admits(message(2))
    assert not handled.admits(message(1))  # consumed by its ack
    assert not handled.admits(message(3))
    assert handled.admits(message(3, topic="other"))


def test_ack_of_a_record_no_agent_handled_is_released_but_not_committable(
    consumer: acks.GuardedConsumer,
) -> None:
    """Faust's stream skips and acks records fetched before a rebalance: such an
    ack must not let the next commit move past the record, even by the one-offset
    hole Faust otherwise tolerates at the head of the acked run."""
    tp = TP(TOPIC, 0)
    consumer._committed_offset[tp] = 10
    skipped, after = message(10), message(11)
    consumer.track_message(skipped)
    assert consumer.ack(skipped) is False
    assert skipped.acked and skipped not in consumer.unacked
    handled = acks.handled_records(consumer.app)
    handled.mark([after])
    assert consumer.ack(after) is True
    assert consumer._new_offset(tp) is None  # 10 was never handled
    assert handled.refused == 1
    # Its redelivery is handled: now 10 and 11 commit together.
    redelivered = message(10)
    handled.mark([redelivered])
    assert consumer.ack(redelivered) is True
    assert consumer._new_offset(tp) == 12


def test_handled_records_requires_the_guarded_transport() -> None:
    app = faust.App("t-plain", broker="kafka://127.0.0.1:1", autodiscover=False)
    with pytest.raises(TypeError, match=r"streams\.acks"):
        acks.handled_records(app)
