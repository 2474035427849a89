"""Lua scripts of :class:`service.core.store.Store`, and :class:`Batch`, which collects a
transaction's plain writes so a script can run them in the same round trip.

:data:`ACCEPT` is the whole intake write as one ``EVALSHA``: where ``WATCH`` + ``GET`` +
``MULTI``/``EXEC`` took three round trips (and a retry on a conflict), and the Idempotency-Key's
claim and completion two more, the script reads the key and the in-flight claim, decides and
writes atomically. The record's and index keys are passed in ARGV (this deployment runs one
Redis, not a cluster), all but the record in one JSON argument.
"""

from __future__ import annotations

from typing import Any

# Stands for the record's ``queuedBehind`` in the JSON given to ACCEPT: the script writes the
# holder's id there, or null (the holder is only known inside the script).
HOLDER = "~queued-behind~"

# ARGV[1]: a JSON object of the small arguments (redis-py packs each argument in Python, copying
# the buffer so far every time: one argument instead of ~40 was most of the API's CPU per POST):
#   inflight, waiting (keys), rprefix (record key prefix), id, caller, terminal (",succeeded,
#   failed,cancelled,"), rttl (record ttl s), cttl (claim ttl s: in-flight, waiting,
#   credentials), ckey, creds (credentials key and token, "": none), jkey, jpx (the arq job's
#   key and expiry ms), queue, score (arq's queue and the job's score), wake (the channel a
#   new job is announced on: idle workers wait on it between polls), index (the index
#   writes, Batch.argv), ikey ("": no Idempotency-Key), fp (the body's fingerprint), ittl.
# ARGV[2]: the record's JSON, queuedBehind = HOLDER. ARGV[3]: the arq job.
# Returns {0, JSON of the same caller's live request (nothing written but, when its fingerprint
# is the body's, the key completed as a 200 for it)}, {1, holder id or false (written; the new
# request is queued behind the holder)} or {2, what the Idempotency-Key already holds (nothing
# written)}.
ACCEPT = """
local a = cjson.decode(ARGV[1])
local id, caller, terminal, rprefix = a.id, a.caller, a.terminal, a.rprefix
local ikey, fp = a.ikey, a.fp
if ikey ~= '' then
  local held = redis.call('GET', ikey)
  if held then return {2, held} end
end
local function complete(status, rid)
  if ikey == '' then return end
  redis.call('SET', ikey, cjson.encode({fp = fp, status = status, id = rid}), 'EX', a.ittl)
end
local function live(rid)
  if not rid then return nil end
  local raw = redis.call('GET', rprefix .. rid)
  if not raw then return nil end
  local r = cjson.decode(raw)
  if string.find(terminal, ',' .. tostring(r.state) .. ',', 1, true) then return nil end
  return r, raw
end
local function own(r, raw)
  if r.requestFingerprint == fp then complete(200, r.id) end
  return {0, raw}
end
local hid = redis.call('GET', a.inflight)
local holder, hraw = live(hid)
if holder then
  if holder.caller == caller then return own(holder, hraw) end
  for _, m in ipairs(redis.call('LRANGE', a.waiting, 0, -1)) do
    local w, wraw = live(m)
    if w and w.caller == caller then return own(w, wraw) end
  end
end
local json = ARGV[2]
local mark = '"' .. '~queued-behind~' .. '"'
local s, e = string.find(json, mark, 1, true)
local value = 'null'
if holder then value = cjson.encode(hid) end
json = string.sub(json, 1, s - 1) .. value .. string.sub(json, e + 1)
local ttl = a.cttl
if a.creds ~= '' then redis.call('SET', a.ckey, a.creds, 'EX', ttl) end
redis.call('SET', rprefix .. id, json, 'EX', a.rttl)
local index, i = a.index, 1
while i <= #index do
  local n = index[i]
  redis.call(unpack(index, i + 1, i + n))
  i = i + n + 1
end
complete(202, id)
if holder then
  redis.call('RPUSH', a.waiting, id)
  redis.call('EXPIRE', a.waiting, ttl)
  return {1, hid}
end
redis.call('SET', a.inflight, id, 'EX', ttl)
redis.call('SET', a.jkey, ARGV[3], 'PX', a.jpx, 'NX')
redis.call('ZADD', a.queue, 'NX', a.score, id)
redis.call('PUBLISH', a.wake, '')
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
