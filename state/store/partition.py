"""What the store keeps about one table partition this worker owns."""

from __future__ import annotations

from dataclasses import dataclass, field

from state.store.buffer import PartitionBuffer


@dataclass
class OwnedPartition:
    """One claimed partition: its fencing epoch, write-back buffer and changelog progress.

    The object lives from the claim that made this worker the owner until the
    partition is revoked or fenced; a later claim by this worker after another
    owner starts a new one, so holding on to the object (a flush or prefetch
    in flight) is how a caller notices the partition changed hands.
    """

    #: The fencing epoch this worker claimed; every write script checks it.
    epoch: int
    buffer: PartitionBuffer = field(default_factory=PartitionBuffer)
    #: Changelog offset stored with the data when claimed (None: none stored).
    stored_offset: int | None = None
    #: Highest changelog offset the broker acknowledged since (None: none yet).
    acked: int | None = None
    #: Bumped by every write to Redis and every reset of the local copies, so a
    #: prefetch that raced one of them drops what it read.
    generation: int = 0
    #: Per source, the offset below which the partition's state covers it
    #: (stored with the data, moved on by the app's marks).
    sources: dict[str, int] = field(default_factory=dict)

    def ack(self, offset: int) -> None:
        """Note an acknowledged changelog offset (only ever moves forward)."""
        if self.acked is None or offset > self.acked:
            self.acked = offset

    def advance(self, source: str, offset: int) -> None:
        """Note source progress (only ever moves forward)."""
        if offset > self.sources.get(source, -1):
            self.sources[source] = offset
