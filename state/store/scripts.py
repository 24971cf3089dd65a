"""Lua scripts: the only way the store changes a partition's keys in Redis.

Each script touches the data hash, the metadata hash and the schedule
(sorted set: table key -> score, the store's secondary index) of ONE
partition (same hash tag, so same cluster slot) and runs atomically on the
server. Every script gets the three keys in that order (KEYS[1..3]).
The fencing rule lives here: a write or wipe runs only when the caller's
epoch equals the partition's current epoch, so a worker that lost the
partition to a newer claim can never overwrite the new owner's data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["CLAIM", "DUE", "WIPE", "WRITE", "Script"]


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA1, for EVALSHA with an EVAL fallback."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


#: Takes ownership: bumps the epoch, returns {epoch, offset|nil}.
CLAIM = Script(
    """
local epoch = redis.call('HINCRBY', KEYS[2], 'epoch', 1)
local offset = redis.call('HGET', KEYS[2], 'offset')
return {epoch, offset}
"""
)

#: ARGV = epoch, offset ('' keeps the stored one), n pairs, n deletes,
#: n index scores, then the n key/value pairs, the keys to delete, the n
#: score/key pairs to add to the schedule and the keys to remove from it.
#: Values and schedule entries of one flush land together or not at all.
#: The offset never moves backwards. Returns 1 when applied, 0 when fenced. Arguments are
#: unpacked in slices because Lua's unpack() is limited by the C stack.
WRITE = Script(
    """
if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[1] then
  return 0
end
local slice = 500
local function each(command, key, first, last, width)
  local i = first
  while i <= last do
    local j = math.min(i + width * slice - 1, last)
    redis.call(command, key, unpack(ARGV, i, j))
    i = j + 1
  end
end
local pairs_end = 5 + 2 * tonumber(ARGV[3])
local deletes_end = pairs_end + tonumber(ARGV[4])
local scores_end = deletes_end + 2 * tonumber(ARGV[5])
each('HSET', KEYS[1], 6, pairs_end, 2)
each('HDEL', KEYS[1], pairs_end + 1, deletes_end, 1)
each('ZADD', KEYS[3], deletes_end + 1, scores_end, 2)
each('ZREM', KEYS[3], scores_end + 1, #ARGV, 1)
if ARGV[2] ~= '' then
  local stored = redis.call('HGET', KEYS[2], 'offset')
  if not stored or tonumber(ARGV[2]) > tonumber(stored) then
    redis.call('HSET', KEYS[2], 'offset', ARGV[2])
  end
end
return 1
"""
)

#: ARGV[1] = epoch. Drops the partition's data, schedule and offset (keeps
#: the epoch). Returns 1, or 0 when fenced.
WIPE = Script(
    """
if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('HDEL', KEYS[2], 'offset')
return 1
"""
)

#: ARGV = epoch, until, limit, retry_at. Returns up to ``limit`` keys whose
#: schedule score is <= until, lowest first, and moves each of them to
#: retry_at in the same call, so the next tick does not hand them out again
#: while their work is on its way (if it is lost, they come back at
#: retry_at: at-least-once). Returns nil when fenced.
DUE = Script(
    """
if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[1] then
  return nil
end
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, key in ipairs(due) do
  redis.call('ZADD', KEYS[3], 'XX', ARGV[4], key)
end
return due
"""
)
