"""Smoke test for the local broker: transactional produce (commit + abort) and a
read_committed consumer in a group, at replication factor 1.

Run: .venv/bin/python scripts/kafka/txn_smoke.py   (honours LTV_KAFKA_PORT; needs aiokafka)
Creates one throw-away topic infra-smoke-<random> and deletes it again.
"""
import asyncio, os, uuid
from aiokafka import AIOKafkaProducer, AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

BOOT = f"127.0.0.1:{os.environ.get('LTV_KAFKA_PORT', '9092')}"

async def main():
    topic = f"infra-smoke-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOT)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    await admin.close()

    prod = AIOKafkaProducer(bootstrap_servers=BOOT, transactional_id=f"smoke-{uuid.uuid4().hex[:6]}",
                            enable_idempotence=True)
    await prod.start()
    async with prod.transaction():
        await prod.send_and_wait(topic, b"committed-value", key=b"c-42")
    # an aborted one that must NOT be seen
    await prod.begin_transaction()
    await prod.send_and_wait(topic, b"aborted-value", key=b"c-42")
    await prod.abort_transaction()
    async with prod.transaction():
        await prod.send_and_wait(topic, b"second-committed", key=b"c-43")
    await prod.stop()

    cons = AIOKafkaConsumer(topic, bootstrap_servers=BOOT, group_id=f"g-{uuid.uuid4().hex[:6]}",
                            isolation_level="read_committed", auto_offset_reset="earliest",
                            enable_auto_commit=False)
    await cons.start()
    got = []
    try:
        while len(got) < 2:
            batch = await asyncio.wait_for(cons.getmany(timeout_ms=1000), 30)
            for tp, msgs in batch.items():
                got += [m.value for m in msgs]
        await cons.commit()
    finally:
        await cons.stop()
    print("topic", topic, "read_committed got:", got)
    assert got == [b"committed-value", b"second-committed"], got
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOT)
    await admin.start()
    await admin.delete_topics([topic])
    await admin.close()
    print("OK: transactions + consumer group commit work at RF 1")

asyncio.run(main())
