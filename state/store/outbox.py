"""Table values that carry the output records they owe (a transactional outbox).

A stream processor writes a table value and sends the outputs of the same
event as independent records: the changelog record can be acknowledged
while an output is not, and a worker killed in between leaves the state
updated and the output lost (the redelivered input is a no-op).

With ``Table(options={"outbox": outbox})`` the app writes values that embed
their outputs, so the changelog record *is* the promise to publish them.
The store then:

* keeps only ``outbox.strip(value)`` in its buffer and in Redis (the owed
  records are needed in the changelog only);
* for every changelog record it restores into an active partition, calls
  ``outbox.resend(value)`` before buffering it. Resent records are queued,
  and a flush awaits ``outbox.acknowledged()`` before writing Redis, so
  Redis never covers a changelog record whose owed outputs were not
  acknowledged: a crash during recovery resends again.

Downstream sees such outputs twice at most once per crash; consumers drop
replays (for ``ltv.updates``: by version).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Outbox"]


class Outbox(Protocol):
    """What the app tells the store about its values (see module doc)."""

    def strip(self, value: bytes) -> bytes:
        """The part of ``value`` to keep in Redis."""
        ...

    def resend(self, value: bytes) -> int:
        """Queue the records ``value`` owes for sending; return how many."""
        ...

    async def acknowledged(self) -> None:
        """Send what is queued, in order; return once all of it is acknowledged."""
        ...
