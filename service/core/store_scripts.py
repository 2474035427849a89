"""Lua scripts of :class:`service.core.store.Store`, and :class:`Batch`, which collects a
transaction's plain writes so a script can run them in the same round trip.

:data:`ACCEPT` is the whole intake write as one ``EVALSHA``: where ``WATCH`` + ``GET`` +
``MULTI``/``EXEC`` took three round trips (and a retry on a conflict), the script reads the
in-flight claim, decides and writes atomically. The record's and index keys are passed in ARGV
(this deployment runs one Redis, not a cluster).
"""

from __future__ import annotations

from typing import Any

# Stands for the record's ``queuedBehind`` in the JSON given to ACCEPT: the script writes the
# holder's id there, or null (the holder is only known inside the script).
HOLDER = "~queued-behind~"

# ARGV: 1 in-flight key, 2 waiting key, 3 record key prefix, 4 request id, 5 caller,
#       6 terminal states (",succeeded,failed,cancelled,"), 7 record JSON (queuedBehind =
#       HOLDER), 8 record ttl s, 9 claim ttl s (in-flight, waiting, credentials),
#       10 credentials key, 11 credentials token ("": none), 12 job key, 13 job, 14 job px,
#       15 queue key, 16 queue score, 17.. the index writes (Batch.argv).
# Returns {0, JSON of the same caller's live request (nothing written)} or {1, holder id or
# false (the new request is queued behind it)}.
ACCEPT = """
local inflight, waiting, rprefix, id, caller, terminal = ARGV[1], ARGV[2], ARGV[3], ARGV[4],
  ARGV[5], ARGV[6]
local function live(rid)
  if not rid then return nil end
  local raw = redis.call('GET', rprefix .. rid)
  if not raw then return nil end
  local r = cjson.decode(raw)
  if string.find(terminal, ',' .. tostring(r.state) .. ',', 1, true) then return nil end
  return r, raw
end
local hid = redis.call('GET', inflight)
local holder, hraw = live(hid)
if holder then
  if holder.caller == caller then return {0, hraw} end
  for _, m in ipairs(redis.call('LRANGE', waiting, 0, -1)) do
    local w, wraw = live(m)
    if w and w.caller == caller then return {0, wraw} end
  end
end
local json = ARGV[7]
local mark = '"' .. '~queued-behind~' .. '"'
local s, e = string.find(json, mark, 1, true)
local value = 'null'
if holder then value = cjson.encode(hid) end
json = string.sub(json, 1, s - 1) .. value .. string.sub(json, e + 1)
local ttl = ARGV[9]
if ARGV[11] ~= '' then redis.call('SET', ARGV[10], ARGV[11], 'EX', ttl) end
redis.call('SET', rprefix .. id, json, 'EX', ARGV[8])
local i = 17
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
if holder then
  redis.call('RPUSH', waiting, id)
  redis.call('EXPIRE', waiting, ttl)
  return {1, hid}
end
redis.call('SET', inflight, id, 'EX', ttl)
redis.call('SET', ARGV[12], ARGV[13], 'PX', ARGV[14], 'NX')
redis.call('ZADD', ARGV[15], 'NX', ARGV[16], id)
return {1, false}
"""


class Batch:
    """The pipeline methods :meth:`service.core.indexes.Indexes.write` uses, collected as
    commands for a script (:attr:`argv`: for each command its length, then the command)."""

    def __init__(self) -> None:
        self.argv: list[Any] = []

    def _add(self, *command: Any) -> None:
        self.argv.append(len(command))
        self.argv.extend(command)

    def zadd(self, name: str, mapping: dict[str, float], nx: bool = False) -> None:
        flat = [v for member, score in mapping.items() for v in (repr(float(score)), member)]
        self._add("ZADD", name, *(["NX"] if nx else []), *flat)

    def zrem(self, name: str, *members: str) -> None:
        self._add("ZREM", name, *members)

    def zremrangebyscore(self, name: str, low: str, high: str) -> None:
        self._add("ZREMRANGEBYSCORE", name, low, high)
