"""Redis key layout of the table store.

Every key of one table partition carries the same hash tag
``{ltv:<app_id>:<table>:<partition>}``, so on Redis Cluster the data hash,
its metadata hash and its secondary indexes (sorted sets, ``INDEXES``) live
in one slot and a single Lua script may touch them all (that is what makes a
flush atomic and fenceable). The app id and table name are percent-encoded, which makes the
layout unambiguous (``a:b`` + ``c`` never collides with ``a`` + ``b:c``) and
leaves no glob metacharacters, so the ``reset_state`` scan pattern below
matches this app's and table's keys only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

__all__ = ["EPOCH_FIELD", "INDEXES", "OFFSET_FIELD", "SOURCE_PREFIX", "Index", "KeyLayout"]

#: Field of the metadata hash holding the partition's fencing epoch.
EPOCH_FIELD = b"epoch"
#: Field of the metadata hash holding the last applied changelog offset.
OFFSET_FIELD = b"offset"
#: Prefix of the metadata fields holding source progress (``source:<name>``
#: -> the next source offset the stored data covers).
SOURCE_PREFIX = "source:"

#: A secondary index of the table's keys, each a sorted set per partition.
#: The store only keeps scores; what they mean is the app's: ``schedule``
#: holds the unix time of each key's next time-driven check, ``notices`` the
#: event time its input must pass before a held event is reported.
Index = Literal["schedule", "notices"]
INDEXES: tuple[Index, ...] = ("schedule", "notices")


def _component(text: str) -> str:
    return quote(text, safe="")


@dataclass(frozen=True)
class KeyLayout:
    """Names of the Redis keys of one table of one app."""

    app_id: str
    table: str

    @property
    def _prefix(self) -> str:
        return f"{{ltv:{_component(self.app_id)}:{_component(self.table)}:"

    def tag(self, partition: int) -> str:
        """Return the hash tag shared by every key of ``partition``."""
        return f"{self._prefix}{partition}}}"

    def data_key(self, partition: int) -> bytes:
        """Return the hash of table key -> value bytes of ``partition``."""
        return f"{self.tag(partition)}:data".encode()

    def meta_key(self, partition: int) -> bytes:
        """Return the hash of ``epoch`` and ``offset`` of ``partition``."""
        return f"{self.tag(partition)}:meta".encode()

    def contributions_key(self, partition: int) -> bytes:
        """Return the hash of table key -> the value's contribution (``sums``)."""
        return f"{self.tag(partition)}:contributions".encode()

    def sums_key(self, partition: int) -> bytes:
        """Return the hash of total name -> integer: the partition's sums (``sums``)."""
        return f"{self.tag(partition)}:sums".encode()

    def index_key(self, partition: int, index: Index) -> bytes:
        """Return the sorted set of table key -> score of ``index`` in ``partition``."""
        return f"{self.tag(partition)}:{index}".encode()

    def keys(self, partition: int) -> list[bytes]:
        """Return KEYS of every store script: data, meta, contributions, sums,
        then each of ``INDEXES``."""
        indexes = [self.index_key(partition, index) for index in INDEXES]
        return [
            self.data_key(partition),
            self.meta_key(partition),
            self.contributions_key(partition),
            self.sums_key(partition),
            *indexes,
        ]

    def scan_pattern(self) -> str:
        """Return a SCAN MATCH pattern for every key of this app's table."""
        return f"{self._prefix}*"
