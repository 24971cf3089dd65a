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


def guarded_transport(name: str) -> acks.Transport:
    """An app with the guarded transport, acks tracked and guarded for TOPIC."""
    app = faust.App(name, broker="kafka://127.0.0.1:1", autodiscover=False)
    app.transport = transport = acks.Transport(app.conf.broker_consumer, app)
    # The conductor fills this when it subscribes to the agents' topics (at start).
    app.topics._acking_topics.add(TOPIC)  # type: ignore[attr-defined]
    transport.handled.guard([TOPIC])
    return transport


@pytest.fixture
def consumer() -> Iterator[acks.GuardedConsumer]:
    guarded = guarded_transport("t-acks").app.consumer
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


async def test_a_hole_in_the_delivered_offsets_is_fetched_again_not_committed() -> None:
    """Records fetched but never handed to the streams (a fetch cut short around a
    rebalance): Faust counts the hole as a gap of the topic, i.e. as acked."""
    delivered: list[int] = []

    async def streams(m: Message) -> None:
        delivered.append(m.offset)

    transport = guarded_transport("t-holes")
    consumer = acks.GuardedConsumer(
        transport, callback=streams, on_partitions_revoked=None, on_partitions_assigned=None
    )
    tp = TP(TOPIC, 0)
    consumer._committed_offset[tp] = 50
    consumer._expected[tp] = 50  # as after the seek to the committed offset
    for offset in (50, 55):  # 51..54 dropped
        await consumer.callback(message(offset))
    assert delivered == [50, 55]
    assert consumer._rewinds == {tp: 51}
    transport.handled.mark([message(50), message(55)])
    assert consumer.ack(message(50)) and consumer.ack(message(55))
    assert consumer._new_offset(tp) == 51  # not past the hole
    assert consumer._new_offset(tp) is None
    assert not consumer._gap[tp]  # Faust's gap bookkeeping untouched
    # After the re-fetch: a hole still there at the same start is a real gap.
    consumer._rewinds.clear()
    consumer._rewound[tp] = consumer._expected[tp] = 51  # what getmany's rewind sets
    consumer._missing[tp].clear()
    await consumer.callback(message(55))
    assert consumer._gap[tp] and not consumer._rewinds


def test_a_head_record_that_never_reached_an_agent_holds_the_commit(
    consumer: acks.GuardedConsumer,
) -> None:
    """A record handed to the streams but dropped before an agent saw it (a queue
    cleared by a rebalance) leaves a one-offset hole at the head, which Faust
    would commit past: instead the commit waits and the record is fetched again."""
    tp = TP(TOPIC, 0)
    consumer._committed_offset[tp] = 1169
    after = message(1170)
    acks.handled_records(consumer.app).mark([after])
    assert consumer.ack(after) is True
    assert consumer._new_offset(tp) is None
    assert consumer._rewinds == {tp: 1169}


async def test_an_assignment_tells_listeners_where_consumption_starts(
    consumer: acks.GuardedConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What comes before the committed offset was handled: progress counted from
    there (streams.progress) cannot pass a record the worker never read."""
    tp = TP(TOPIC, 3)

    async def seek(self: object) -> None:  # Faust's own seek: not under test
        return None

    monkeypatch.setattr(acks.aiokafka_driver.Consumer, "perform_seek", seek)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp, TP("unguarded", 0)})
    consumer._committed_offset[tp] = 42
    started: list[tuple[TP, int]] = []
    consumer.handled.on_start.append(lambda t, offset: started.append((t, offset)))
    await consumer.perform_seek()
    assert started == [(tp, 42)]
