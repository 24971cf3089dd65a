"""Creating the service's topics from outside the worker (demo, backfill, tests).

A producer that publishes before any worker ran would otherwise meet a broker
that auto-creates the topic with its default partition count, silently
breaking the LTV_PARTITIONS contract.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from state.model_store import model_key
from state.store.keys import KeyLayout
from streams.kafka_security import kafka_client
from streams.settings import Settings

#: The table whose Redis keys a deployment owns (``streams.app``).
TABLE = "customers"

#: Longest wait for the partitions of created topics to get leaders (seconds).
LEADER_TIMEOUT = 30.0
LEADER_POLL = 0.05


def topic_names(settings: Settings) -> list[str]:
    return [
        *settings.input_topics,
        settings.topic_updates,
        settings.topic_churn,
        settings.topic_dead_letter,
        settings.topic_customers,
        # Co-partitioned with the inputs like them, so created with them.
        settings.topic_inactivity,
    ]


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Configs the service relies on, by topic; other topics take the broker's defaults.

    ``ltv.customers`` is compacted: it keeps the newest update of every customer.
    """
    return {settings.topic_customers: {"cleanup.policy": "compact"}}


class TopicLayoutError(RuntimeError):
    """An existing topic's partition count or cleanup policy disagrees with the settings."""


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
        configs = topic_configs(settings)
        missing = [name for name in topic_names(settings) if name not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        name,
                        settings.partitions,
                        settings.replication_factor,
                        topic_configs=configs.get(name, {}),
                    )
                    for name in missing
                ]
            )
            await _await_leaders(admin, missing, settings.partitions)
        # Only pre-existing inputs are checked: a topic just created may not
        # list its partitions in metadata yet, and it has the right count anyway.
        inputs = [t for t in settings.input_topics if t not in missing]
        for described in await admin.describe_topics(inputs) if inputs else []:
            count = len(described["partitions"])
            if count != settings.partitions:
                raise TopicLayoutError(
                    f"topic {described['topic']!r} has {count} partitions but "
                    f"LTV_PARTITIONS={settings.partitions}; set LTV_PARTITIONS={count} "
                    "or recreate the topic"
                )
        await _check_configs(admin, {t: c for t, c in configs.items() if t not in missing})
        return missing
    finally:
        await admin.close()


async def partitions_of(settings: Settings, topic: str) -> list[int]:
    """The partition numbers of ``topic`` (empty: no such topic)."""
    admin = AIOKafkaAdminClient(**kafka_client(settings))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        if described["error_code"] != 0:
            return []
        return sorted(p["partition"] for p in described["partitions"])
    finally:
        await admin.close()


async def _await_leaders(admin: AIOKafkaAdminClient, topics: list[str], partitions: int) -> None:
    """Return once every partition of the new ``topics`` has a leader.

    A topic is usable a moment after it is created: until its partitions
    have leaders, producers and consumers get NotLeaderForPartition back and
    log it on every retry, which a user starting the demo would read as a fault.
    """
    deadline = time.monotonic() + LEADER_TIMEOUT
    while True:
        described = await admin.describe_topics(topics)
        ready = all(
            t["error_code"] == 0
            and len(t["partitions"]) == partitions
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
            for t in described
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise TopicLayoutError(
                f"topics {', '.join(topics)} have no leader {LEADER_TIMEOUT:g} s after creation"
            )
        await asyncio.sleep(LEADER_POLL)  # metadata has no change notification


async def _check_configs(admin: AIOKafkaAdminClient, wanted: dict[str, dict[str, str]]) -> None:
    """Existing topics must carry the configs the service relies on (no silent growth)."""
    if not wanted:
        return
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted]
    for response in await admin.describe_configs(resources):
        for _, _, _, name, entries in response.resources:
            actual = {entry[0]: entry[1] for entry in entries}
            for key, value in wanted[name].items():
                if actual.get(key) != value:
                    raise TopicLayoutError(
                        f"topic {name!r} has {key}={actual.get(key)!r}, the service needs "
                        f"{key}={value!r}; alter the topic's config or recreate it"
                    )


async def drop_deployment(settings: Settings, redis: Any) -> tuple[list[str], int]:
    """Delete the topics and the Redis state of the deployment ``LTV_APP_ID``.

    For a deployment that is thrown away after use (each ``make run`` is a
    new demo shop): its topics (``topic_names`` and Faust's internal
    ``<app id>-...`` topics), its table and its model. Returns the topics
    deleted and the number of Redis keys deleted.
    """
    admin = AIOKafkaAdminClient(**kafka_client(settings))
    await admin.start()
    try:
        own = set(topic_names(settings))
        topics = sorted(
            t for t in await admin.list_topics() if t in own or t.startswith(f"{settings.app_id}-")
        )
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()
    patterns = (KeyLayout(settings.app_id, TABLE).scan_pattern(), f"{model_key(settings.app_id)}*")
    deleted = 0
    for pattern in patterns:
        keys = [key async for key in redis.scan_iter(match=pattern, count=1000)]
        for start in range(0, len(keys), 1000):
            deleted += int(await redis.delete(*keys[start : start + 1000]))
    return topics, deleted
