"""``RecordBatches`` against the real broker: order, partitions, offsets, limits."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pipeline_harness import BOOTSTRAP, require_servers

from streams.record_batches import OutgoingRecord, RecordBatches

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PARTITIONS = 3


@pytest.fixture
async def topic() -> AsyncIterator[str]:
    require_servers()
    name = f"batches-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
        yield name
        await admin.delete_topics([name])
    finally:
        await admin.close()


@pytest.fixture
async def producer() -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True, max_batch_size=4096
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def read_all(topic: str, count: int) -> dict[int, list[tuple[int, bytes | None, bytes]]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: dict[int, list[tuple[int, bytes | None, bytes]]] = defaultdict(list)
        while sum(len(v) for v in found.values()) < count:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                found[tp.partition].extend((r.offset, r.key, r.value or b"") for r in records)
        return found
    finally:
        await consumer.stop()


async def test_records_land_in_order_where_send_would_put_them(
    topic: str, producer: AIOKafkaProducer
) -> None:
    # 600 records of ~100 bytes overflow the 4 KiB batches many times over.
    keys = [f"customer-{n % 37}".encode() for n in range(600)]
    records = [
        OutgoingRecord(topic, None, key, b"%05d" % n + b"x" * 95) for n, key in enumerate(keys)
    ]
    records.append(OutgoingRecord(topic, 2, b"pinned", b"to partition 2"))
    last = await RecordBatches(producer).send(records)

    found = await read_all(topic, len(records))
    # The oracle for the partition: the producer's own per-record send.
    for key in set(keys):
        metadata = await (await producer.send(topic, b"probe", key=key))
        (partition,) = {p for p, rs in found.items() for _, k, _ in rs if k == key}
        assert partition == metadata.partition, key
    assert found[2][-1][1:] == (b"pinned", b"to partition 2")
    for partition, rows in found.items():
        values = [v for _, k, v in rows if k != b"pinned"]
        assert values == sorted(values), f"partition {partition} out of order"
        assert last[TopicPartition(topic, partition)] == rows[-1][0]
    assert sum(len(rows) for rows in found.values()) == len(records)


async def test_a_record_larger_than_a_batch_goes_in_a_batch_of_its_own(
    topic: str, producer: AIOKafkaProducer
) -> None:
    big = b"x" * 10_000  # the batches hold 4 KiB
    records = [OutgoingRecord(topic, 0, b"k", value) for value in (b"before", big, b"after")]
    last = await RecordBatches(producer).send(records)
    found = await read_all(topic, 3)
    assert [value for _, _, value in found[0]] == [b"before", big, b"after"]
    assert last == {TopicPartition(topic, 0): found[0][-1][0]}
