"""Shared Redis connection of a worker (the table store keeps its own pool)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster


def redis_client(url: str) -> Any:
    """An asyncio Redis client for ``redis://``, ``rediss://`` or ``redis+cluster://`` URLs."""
    if url.startswith("redis+cluster://"):
        return RedisCluster.from_url("redis://" + url.removeprefix("redis+cluster://"))
    return aioredis.Redis.from_url(url)
