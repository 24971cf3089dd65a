"""Partition sums: integer totals the store keeps exact with every write.

A table may ask the store to keep, per partition, the sum of what each of its
values contributes to a set of named integer totals (the live group
aggregates of ``state.insights`` are the one user). The app puts each value's
contribution inside the value; ``Contributions.split`` cuts it out. The store
keeps the contributions in their own hash, one field per table key, and the
totals in another, and the write script of a flush (``scripts.WRITE``) changes
all three in one step per key: it subtracts the contribution stored for the
key, adds the new one and stores it. So whatever was written, replayed or
restored from the changelog, and in whatever order, a partition's totals in
Redis are at every moment exactly the sum of the contributions of the values
in its data hash, and a wipe or a rebuild from the changelog rebuilds them
with the data.

Contributions are flat JSON objects of name -> integer. The script adds them
up in Lua numbers (doubles), exact up to 2**53 per flush and name; Redis keeps
the totals as 64-bit integers (HINCRBY).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from state.store.keys import KeyLayout

__all__ = ["Contributions", "read_sums"]


class Contributions(Protocol):
    """How the app's values carry their contribution (see module doc)."""

    def split(self, value: bytes) -> tuple[bytes, bytes | None]:
        """The value as the data hash keeps it, and its contribution (None: nothing)."""
        ...


async def read_sums(
    client: Any, layout: KeyLayout, partitions: Sequence[int]
) -> dict[int, dict[str, int]]:
    """Each partition's totals as Redis holds them now, in one pipeline.

    ``client`` is an asyncio Redis client (``StoreConfig.async_client``). What
    a worker has not flushed yet is not included: the totals cover exactly
    the flushed values, whoever owns the partition.
    """
    pipe = client.pipeline(transaction=False)
    for partition in partitions:
        pipe.hgetall(layout.sums_key(partition))
    replies = await pipe.execute()
    return {
        partition: {bytes(k).decode(): int(v) for k, v in reply.items()}
        for partition, reply in zip(partitions, replies, strict=True)
    }
