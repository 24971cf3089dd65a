"""Lua scripts: the only way the store changes a partition's keys in Redis.

Each script touches the data hash and the metadata hash of ONE partition
(same hash tag, so same cluster slot) and runs atomically on the server.
The fencing rule lives here: a write or wipe runs only when the caller's
epoch equals the partition's current epoch, so a worker that lost the
partition to a newer claim can never overwrite the new owner's data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["CLAIM", "WIPE", "WRITE", "Script"]


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA1, for EVALSHA with an EVAL fallback."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


#: KEYS[1] = data (unused), KEYS[2] = meta. Takes ownership: bumps the
#: epoch, returns {epoch, offset|nil}.
CLAIM = Script(
    """
local epoch = redis.call('HINCRBY', KEYS[2], 'epoch', 1)
local offset = redis.call('HGET', KEYS[2], 'offset')
return {epoch, offset}
"""
)

#: KEYS[1] = data, KEYS[2] = meta; ARGV = epoch, offset ('' keeps the stored
#: one), number of pairs n, n key/value pairs, then keys to delete.
#: The offset never moves backwards. Returns 1 when applied, 0 when fenced. Arguments are
#: unpacked in slices because Lua's unpack() is limited by the C stack.
WRITE = Script(
    """
if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[1] then
  return 0
end
local slice = 500
local last_pair = 3 + 2 * tonumber(ARGV[3])
local i = 4
while i <= last_pair do
  local j = math.min(i + 2 * slice - 1, last_pair)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
while i <= #ARGV do
  local j = math.min(i + slice - 1, #ARGV)
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
if ARGV[2] ~= '' then
  local stored = redis.call('HGET', KEYS[2], 'offset')
  if not stored or tonumber(ARGV[2]) > tonumber(stored) then
    redis.call('HSET', KEYS[2], 'offset', ARGV[2])
  end
end
return 1
"""
)

#: KEYS[1] = data, KEYS[2] = meta; ARGV[1] = epoch. Drops the partition's
#: data and offset (keeps the epoch). Returns 1, or 0 when fenced.
WIPE = Script(
    """
if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], 'offset')
return 1
"""
)
