"""Redis key layout of the table store.

Every key of one table partition carries the same hash tag
``{ltv:<app_id>:<table>:<partition>}``, so on Redis Cluster the data hash,
its metadata hash and its schedule (sorted set) live in one slot and a single
Lua script may touch all three (that is what makes a flush atomic and
fenceable). The app id and table name are percent-encoded, which makes the
layout unambiguous (``a:b`` + ``c`` never collides with ``a`` + ``b:c``) and
leaves no glob metacharacters, so the ``reset_state`` scan pattern below
matches this app's and table's keys only.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["EPOCH_FIELD", "OFFSET_FIELD", "KeyLayout"]

#: Field of the metadata hash holding the partition's fencing epoch.
EPOCH_FIELD = b"epoch"
#: Field of the metadata hash holding the last applied changelog offset.
OFFSET_FIELD = b"offset"


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

    def schedule_key(self, partition: int) -> bytes:
        """Return the sorted set of table key -> score of ``partition`` (the
        store's secondary index; the app keeps the unix time of each key's
        next time-driven check there)."""
        return f"{self.tag(partition)}:schedule".encode()

    def keys(self, partition: int) -> list[bytes]:
        """Return KEYS of every store script: data, meta, schedule."""
        return [self.data_key(partition), self.meta_key(partition), self.schedule_key(partition)]

    def scan_pattern(self) -> str:
        """Return a SCAN MATCH pattern for every key of this app's table."""
        return f"{self._prefix}*"
