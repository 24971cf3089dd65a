"""Write-back buffer of one table partition, and the LRU of clean values.

A table write first lands in ``open``. ``seal()`` declares that everything
written so far may be persisted -- the caller promises that the outputs of
the events behind those writes have been handed to the producer -- and
moves ``open`` into ``sealed`` together with the changelog offset
acknowledged at that moment. A flush ``take()``s the sealed writes (they
become ``inflight``), writes them, then ``settle()``s them into the clean
cache, or ``abort()``s and puts them back under any newer sealed writes.

Reads look in ``open``, ``sealed``, ``inflight`` (newest first), then the
clean cache, and only then in Redis. A value of ``None`` is a delete in the
buffer and a "known absent" entry in the cache.

Secondary indexes. Next to each generation of values the buffer keeps the
same generation of *index* writes (``(index, key) -> score``, ``None``
removes the key from that index): the partition's sorted sets in Redis
(``keys.INDEXES``, see ``RedisStore.schedule``). Index writes move through
seal/take/settle/abort together with the values, and a flush writes both
in one script, so after any crash Redis holds a value and its index entry
from the same generation.

Source progress. The app may note, per source (an input topic), the next
offset its writes cover (``advance``). These marks move through the same
generations and land in the partition's metadata hash with the values
they belong to, so Redis never says an input offset was processed while
missing the state it produced.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from state.store.keys import Index

__all__ = ["CleanCache", "Lookup", "PartitionBuffer", "Snapshot"]

K = TypeVar("K")

#: ``(found, value)``: ``found`` False means "ask the next layer".
Lookup = tuple[bool, bytes | None]
#: Which index, which table key.
IndexEntry = tuple[Index, bytes]
_MISS: Lookup = (False, None)


@dataclass(frozen=True)
class Snapshot:
    """Sealed writes of a partition handed to one flush."""

    items: Mapping[bytes, bytes | None]
    #: Last changelog offset known to be covered by ``items`` (None: unknown).
    offset: int | None
    #: Index writes of the same generation: (index, key) -> score, None removes.
    index: Mapping[IndexEntry, float | None] = field(default_factory=dict)
    #: Source progress of the same generation: source -> next offset covered.
    sources: Mapping[str, int] = field(default_factory=dict)

    def covering(self, offset: int | None) -> Snapshot:
        """Return this snapshot, known to cover up to ``offset`` too."""
        if offset is None or (self.offset is not None and offset <= self.offset):
            return self
        return Snapshot(self.items, offset, self.index, self.sources)


@dataclass
class PartitionBuffer:
    """Dirty writes of one partition, in three generations (see module doc)."""

    open: dict[bytes, bytes | None] = field(default_factory=dict)
    sealed: dict[bytes, bytes | None] = field(default_factory=dict)
    inflight: dict[bytes, bytes | None] = field(default_factory=dict)
    open_index: dict[IndexEntry, float | None] = field(default_factory=dict)
    sealed_index: dict[IndexEntry, float | None] = field(default_factory=dict)
    inflight_index: dict[IndexEntry, float | None] = field(default_factory=dict)
    open_sources: dict[str, int] = field(default_factory=dict)
    sealed_sources: dict[str, int] = field(default_factory=dict)
    inflight_sources: dict[str, int] = field(default_factory=dict)
    sealed_offset: int | None = None
    #: Offset stored in Redis by the last successful flush.
    flushed_offset: int | None = None

    def __len__(self) -> int:
        """Buffered writes, values and index entries (each is Redis work to do)."""
        values = len(self.open) + len(self.sealed) + len(self.inflight)
        return values + len(self.open_index) + len(self.sealed_index) + len(self.inflight_index)

    def write(self, key: bytes, value: bytes | None) -> None:
        """Buffer a live write (``None`` deletes)."""
        self.open[key] = value

    def index(self, index: Index, key: bytes, score: float | None) -> None:
        """Buffer a live index write (``None`` removes ``key`` from ``index``)."""
        self.open_index[index, key] = score

    def advance(self, source: str, offset: int) -> None:
        """Note that the live writes cover ``source`` up to ``offset`` (exclusive)."""
        if offset > self.open_sources.get(source, -1):
            self.open_sources[source] = offset

    def indexed(self, index: Index, key: bytes) -> tuple[bool, float | None]:
        """Return the newest buffered score of ``key`` in ``index`` (``found`` first)."""
        for layer in (self.open_index, self.sealed_index, self.inflight_index):
            if (index, key) in layer:
                return True, layer[index, key]
        return False, None

    def recover(self, key: bytes, value: bytes | None, offset: int) -> None:
        """Buffer a changelog record: durable already, so sealed at once."""
        self.sealed[key] = value
        if self.sealed_offset is None or offset > self.sealed_offset:
            self.sealed_offset = offset

    def recover_index(self, index: Index, key: bytes, score: float | None) -> None:
        """Buffer the index entry of a recovered key, sealed with its value."""
        self.sealed_index[index, key] = score

    def lookup(self, key: bytes) -> Lookup:
        """Return the newest buffered value of ``key``."""
        for layer in (self.open, self.sealed, self.inflight):
            if key in layer:
                return True, layer[key]
        return _MISS

    def __contains__(self, key: object) -> bool:
        return key in self.open or key in self.sealed or key in self.inflight

    def seal(self, acked_offset: int | None) -> None:
        """Make every open write flushable, covered up to ``acked_offset``."""
        self.sealed.update(self.open)
        self.open.clear()
        self.sealed_index.update(self.open_index)
        self.open_index.clear()
        _merge_progress(self.sealed_sources, self.open_sources)
        self.open_sources.clear()
        if acked_offset is not None and (
            self.sealed_offset is None or acked_offset > self.sealed_offset
        ):
            self.sealed_offset = acked_offset

    def pending(self) -> bool:
        """Return True when a flush has something to write."""
        if self.sealed or self.sealed_index or self.sealed_sources:
            return True
        if self.sealed_offset is None:
            return False
        return self.flushed_offset is None or self.sealed_offset > self.flushed_offset

    def take(self) -> Snapshot:
        """Hand the sealed writes to a flush (they become in-flight)."""
        assert not self.inflight and not self.inflight_index, "one flush at a time"
        self.inflight, self.sealed = self.sealed, {}
        self.inflight_index, self.sealed_index = self.sealed_index, {}
        self.inflight_sources, self.sealed_sources = self.sealed_sources, {}
        return Snapshot(
            self.inflight, self.sealed_offset, self.inflight_index, self.inflight_sources
        )

    def settle(self, snapshot: Snapshot) -> None:
        """Finish the successful flush of ``snapshot``."""
        self.inflight, self.inflight_index, self.inflight_sources = {}, {}, {}
        if snapshot.offset is not None:
            self.flushed_offset = snapshot.offset
            if self.sealed_offset is None or snapshot.offset > self.sealed_offset:
                self.sealed_offset = snapshot.offset

    def abort(self) -> None:
        """Undo ``take()`` after a failed flush, keeping newer sealed writes."""
        self.inflight.update(self.sealed)
        self.sealed, self.inflight = self.inflight, {}
        self.inflight_index.update(self.sealed_index)
        self.sealed_index, self.inflight_index = self.inflight_index, {}
        _merge_progress(self.inflight_sources, self.sealed_sources)
        self.sealed_sources, self.inflight_sources = self.inflight_sources, {}

    def overlay(self) -> dict[bytes, bytes | None]:
        """Return the newest buffered value of every buffered key."""
        return {**self.inflight, **self.sealed, **self.open}


def _merge_progress(into: dict[str, int], newer: Mapping[str, int]) -> None:
    """Keep the higher offset of each source (progress never moves back)."""
    for source, offset in newer.items():
        if offset > into.get(source, -1):
            into[source] = offset


class CleanCache(Generic[K]):
    """Bounded LRU of values known to equal what Redis holds."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[K, bytes | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def lookup(self, key: K) -> Lookup:
        """Return the cached value of ``key`` and mark it recently used."""
        try:
            value = self._entries[key]
        except KeyError:
            return _MISS
        self._entries.move_to_end(key)
        return True, value

    def put(self, key: K, value: bytes | None) -> None:
        """Cache ``value`` (``None``: absent in Redis), evicting the oldest."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def discard_where(self, predicate: Callable[[K], bool]) -> None:
        """Drop every entry whose key satisfies ``predicate``."""
        for key in [k for k in self._entries if predicate(k)]:
            del self._entries[key]
