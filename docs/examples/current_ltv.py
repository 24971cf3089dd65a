"""Bootstrap a service from ``ltv.customers``: every customer's current LTV.

Reads the compacted topic from its beginning up to the end offsets it had
when the read started and keeps, per customer, the update with the highest
version (compaction runs in the background, so older records of a customer
can still be there). Then follow ``ltv.updates`` for what changes next.

    python docs/examples/current_ltv.py 127.0.0.1:9092 [ltv.customers]
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from aiokafka import AIOKafkaConsumer


async def current_ltv(bootstrap: str, topic: str = "ltv.customers") -> dict[str, dict[str, Any]]:
    """The latest update of every customer, by customer id."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    latest: dict[str, dict[str, Any]] = {}
    ends = None
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    body = json.loads(record.value)
                    seen = latest.get(body["customer_id"])
                    if seen is None or body["version"] > seen["version"]:
                        latest[body["customer_id"]] = body
            if ends is None and consumer.assignment():
                ends = await consumer.end_offsets(list(consumer.assignment()))
            if ends is not None:
                positions = [await consumer.position(tp) for tp in ends]
                if all(at >= end for at, end in zip(positions, ends.values(), strict=True)):
                    return latest
    finally:
        await consumer.stop()


if __name__ == "__main__":
    customers = asyncio.run(current_ltv(*sys.argv[1:3]))
    for customer_id, update in sorted(customers.items()):
        print(customer_id, update["version"], update["total_ltv"])
