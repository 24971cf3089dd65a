"""Lua scripts: the only way the store changes a partition's keys in Redis.

Each script touches the data hash, the metadata hash, the contributions and
sums hashes (``sums``) and the secondary indexes (sorted sets: table key ->
score, ``keys.INDEXES``) of ONE partition (same hash tag, so same cluster
slot) and runs atomically on the server. Every script gets the keys in that
order: KEYS[1] data, KEYS[2] meta, KEYS[3] contributions, KEYS[4] sums,
KEYS[5..] the indexes.
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


#: Takes ownership: bumps the epoch, returns {epoch, offset or false, then
#: the source progress fields and their values}.
CLAIM = Script(
    """
local epoch = redis.call('HINCRBY', KEYS[2], 'epoch', 1)
local offset = redis.call('HGET', KEYS[2], 'offset') or false
local out = {epoch, offset}
local meta = redis.call('HGETALL', KEYS[2])
for i = 1, #meta, 2 do
  if string.sub(meta[i], 1, 7) == 'source:' then
    table.insert(out, meta[i])
    table.insert(out, meta[i + 1])
  end
end
return out
"""
)

#: ARGV = epoch, offset ('' keeps the stored one), n pairs, n deletes, n
#: contributions, then per index n scores to add and n keys to remove, then n
#: source marks; then the n key/value pairs, the keys to delete, the
#: key/contribution pairs ('' for none), per index the score/key pairs to add
#: and the keys to remove, and the source field/offset pairs.
#: Values, contributions, sums, index entries and source progress of one
#: flush land together or not at all. A key's new contribution replaces its
#: stored one in the sums (see ``sums``). Offsets never move backwards.
#: Returns 1 when applied, 0 when fenced. Arguments are unpacked in slices
#: because Lua's unpack() is limited by the C stack.
WRITE = Script(
    """
if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[1] then
  return 0
end
local slice = 500
local indexes = #KEYS - 4
local marks = tonumber(ARGV[6 + 2 * indexes])
local at = 7 + 2 * indexes
local function run(command, key, count, width)
  local last = at + width * count - 1
  while at <= last do
    local j = math.min(at + width * slice - 1, last)
    redis.call(command, key, unpack(ARGV, at, j))
    at = j + 1
  end
end
run('HSET', KEYS[1], tonumber(ARGV[3]), 2)
run('HDEL', KEYS[1], tonumber(ARGV[4]), 1)
local delta = {}
local function tally(raw, sign)
  if raw and raw ~= '' then
    for name, amount in pairs(cjson.decode(raw)) do
      delta[name] = (delta[name] or 0) + sign * amount
    end
  end
end
for _ = 1, tonumber(ARGV[5]) do
  local key, new = ARGV[at], ARGV[at + 1]
  tally(redis.call('HGET', KEYS[3], key), -1)
  tally(new, 1)
  if new == '' then
    redis.call('HDEL', KEYS[3], key)
  else
    redis.call('HSET', KEYS[3], key, new)
  end
  at = at + 2
end
for name, amount in pairs(delta) do
  if amount ~= 0 then
    if redis.call('HINCRBY', KEYS[4], name, string.format('%.0f', amount)) == 0 then
      redis.call('HDEL', KEYS[4], name)
    end
  end
end
for i = 1, indexes do
  run('ZADD', KEYS[4 + i], tonumber(ARGV[4 + 2 * i]), 2)
  run('ZREM', KEYS[4 + i], tonumber(ARGV[5 + 2 * i]), 1)
end
local function forward(field, value)
  local stored = redis.call('HGET', KEYS[2], field)
  if not stored or tonumber(value) > tonumber(stored) then
    redis.call('HSET', KEYS[2], field, value)
  end
end
for i = 1, marks do
  forward(ARGV[at], ARGV[at + 1])
  at = at + 2
end
if ARGV[2] ~= '' then
  forward('offset', ARGV[2])
end
return 1
"""
)

#: ARGV[1] = epoch. Drops the partition's data, contributions, sums, indexes,
#: offset and source progress (keeps the epoch). Returns 1, or 0 when fenced.
WIPE = Script(
    """
if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1], unpack(KEYS, 3))
for _, field in ipairs(redis.call('HKEYS', KEYS[2])) do
  if field ~= 'epoch' then
    redis.call('HDEL', KEYS[2], field)
  end
end
return 1
"""
)

#: ARGV = epoch, until, limit, retry_at, i (the index is KEYS[i]). Returns
#: up to ``limit`` keys whose score in that index is <= until, lowest
#: first, and moves each of them to retry_at in the same call, so the next
#: tick does not hand them out again while their work is on its way (if it
#: is lost, they come back at retry_at: at-least-once). Returns nil when
#: fenced.
DUE = Script(
    """
if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[1] then
  return nil
end
local index = KEYS[tonumber(ARGV[5])]
local due = redis.call('ZRANGEBYSCORE', index, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, key in ipairs(due) do
  redis.call('ZADD', index, 'XX', ARGV[4], key)
end
return due
"""
)
