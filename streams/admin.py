"""Creating the service's topics from outside the worker (demo, backfill, tests).

A producer that publishes before any worker ran would otherwise meet a broker
that auto-creates the topic with its default partition count, silently
breaking the LTV_PARTITIONS contract.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.kafka_security import kafka_client
from streams.settings import Settings


def topic_names(settings: Settings) -> list[str]:
    return [
        settings.topic_purchases,
        settings.topic_cancellations,
        settings.topic_updates,
        settings.topic_churn,
        settings.topic_dead_letter,
        # Co-partitioned with the inputs like them, so created with them.
        settings.topic_inactivity,
    ]


class TopicLayoutError(RuntimeError):
    """An existing topic's partition count disagrees with LTV_PARTITIONS."""


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing topics with LTV_PARTITIONS partitions; return those created.

    Input topics that already exist must have exactly LTV_PARTITIONS partitions:
    the ``customers`` table is co-partitioned with them, and Faust would
    otherwise crash its agents while the process stays up doing nothing.
    """
    admin = AIOKafkaAdminClient(**kafka_client(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topic_names(settings) if name not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(name, settings.partitions, settings.replication_factor)
                    for name in missing
                ]
            )
        # Only pre-existing inputs are checked: a topic just created may not
        # list its partitions in metadata yet, and it has the right count anyway.
        inputs = [
            t for t in (settings.topic_purchases, settings.topic_cancellations) if t not in missing
        ]
        for described in await admin.describe_topics(inputs) if inputs else []:
            count = len(described["partitions"])
            if count != settings.partitions:
                raise TopicLayoutError(
                    f"topic {described['topic']!r} has {count} partitions but "
                    f"LTV_PARTITIONS={settings.partitions}; set LTV_PARTITIONS={count} "
                    "or recreate the topic"
                )
        return missing
    finally:
        await admin.close()
