"""The two Lua scripts of the tenant throttle (:mod:`workers.workflow.throttle`).

Both run atomically in Redis on one hash per tenant, so every worker on every machine shares
one pacing state. ``TAKE`` is the only round trip of an ordinary call: it checks the tenant
cool-down, brings the adaptive rate up to date (growth, and the usage Graph reported), and
reserves a slot. ``THROTTLED`` runs only after a 429: it extends the cool-down and cuts the
rate, once per congestion event.

State fields: ``tok``/``ts`` the token bucket; ``cur`` the rate in force (calls/s);
``wmax``/``tev``/``k``/``ss`` the growth curve (the rate at the last event, when it began, the
cubic's K, slow start or not); ``meas``/``mn``/``mts`` the measured rate of slots handed out;
``tp`` the last usage-based adjustment; ``tcut`` the last 429 cut.
"""

from __future__ import annotations

# KEYS: state hash, cool-down key.
# ARGV: 1 adaptive (0/1), 2 ceiling calls/s (0: none), 3 burst, 4 max_wait ms (-1: none),
#       5 usage reported since the last take (fraction of the limit, -1: none),
#       6 start, 7 min, 8 max calls/s, 9 target usage, 10 epoch ms, 11 slow-start doubling ms,
#       12 cubic C (scale-free), 13 burst seconds, 14 idle ttl ms.
# Returns {kind, wait ms, ticket (server ms when reserved), rate x 1000}; kind 0 = slot
# reserved, 1 = cooling down (nothing reserved), 2 = slot too far (nothing reserved).
TAKE = """
local cool = redis.call('PTTL', KEYS[2])
if cool > 0 then return {1, cool, 0, 0} end
local adaptive = ARGV[1] == '1'
local ceiling = tonumber(ARGV[2])
if not adaptive and ceiling <= 0 then return {0, 0, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local burst = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local usage = tonumber(ARGV[5])
local rmin, rmax = tonumber(ARGV[7]), tonumber(ARGV[8])
if ceiling > 0 then rmax = math.min(rmax, ceiling) end
local f = redis.call('HMGET', KEYS[1], 'tok', 'ts', 'cur', 'wmax', 'tev', 'k', 'ss', 'meas',
  'mn', 'mts', 'tp')
local cur = tonumber(f[3])
local wmax, tev, k, ss = tonumber(f[4]), tonumber(f[5]), tonumber(f[6]), tonumber(f[7])
local meas, mn, mts, tp = tonumber(f[8]), tonumber(f[9]), tonumber(f[10]), tonumber(f[11])
if not adaptive then
  cur = ceiling
elseif not cur or not wmax then
  cur = math.max(rmin, math.min(tonumber(ARGV[6]), rmax))
  wmax, tev, k, ss, meas, mn, mts, tp = cur, now, 0, 1, cur, 0, now, 0
end
local ts = tonumber(f[2]) or now
local dt = math.max(0, now - ts)
if adaptive then burst = math.max(1, math.min(burst, math.floor(cur * tonumber(ARGV[13])))) end
local tokens = math.min(burst, (tonumber(f[1]) or burst) + dt * cur / 1000)
if adaptive then
  -- Grow only while callers queue for slots: an idle tenant teaches nothing about its limit.
  if tokens >= 1 then tev = math.min(now, tev + dt) end
  local epoch = tonumber(ARGV[10])
  if usage > 0 and now - tp >= epoch then
    -- Graph said we use `usage` of the limit at the rate we sent: aim at the target share.
    local sent = math.min(cur, meas)
    wmax = math.max(rmin, math.min(tonumber(ARGV[9]) * sent / usage, rmax))
    tev, k, ss, tp = now, 0, 0, now
  end
  local e = (now - tev) / 1000
  local rate
  if ss == 1 then
    rate = wmax * math.pow(2, e * 1000 / tonumber(ARGV[11]))
  else
    local x = math.max(e, 0) - k
    rate = wmax * (1 + tonumber(ARGV[12]) * x * x * x)
  end
  cur = math.max(rmin, math.min(rate, rmax))
end
tokens = tokens - 1
local wait = 0
if tokens < 0 then wait = math.ceil(-tokens * 1000 / cur) end
local kind = 0
if max_wait >= 0 and wait > max_wait then
  kind = 2
else
  redis.call('HSET', KEYS[1], 'tok', tostring(tokens), 'ts', now)
  if adaptive then mn = mn + 1 end
end
if adaptive then
  if now - mts >= 500 then
    meas = 0.8 * (mn * 1000 / (now - mts)) + 0.2 * meas
    mn, mts = 0, now
  end
  redis.call('HSET', KEYS[1], 'cur', tostring(cur), 'wmax', tostring(wmax), 'tev', tostring(tev),
    'k', tostring(k), 'ss', ss, 'meas', tostring(meas), 'mn', mn, 'mts', mts, 'tp', tp)
end
redis.call('PEXPIRE', KEYS[1], ARGV[14])
return {kind, wait, now, math.floor(cur * 1000)}
"""

# KEYS: state hash, cool-down key.
# ARGV: 1 hold ms (the cool-down, from Retry-After; 0: none), 2 ticket of the throttled call
#       (server ms when its slot was reserved; 0: unknown), 3 cut (0/1), 4 beta, 5 cubic K s,
#       6 min calls/s, 7 ceiling (0: none).
# Returns the rate x 1000 after the cut, 0 when not cut (no adaptive state), -1 when the call
# was sent before the last cut (the same congestion event: cut once).
THROTTLED = """
local hold = tonumber(ARGV[1])
if hold > 0 and redis.call('PTTL', KEYS[2]) < hold then
  redis.call('SET', KEYS[2], '1', 'PX', hold)
end
if ARGV[3] ~= '1' then return 0 end
local f = redis.call('HMGET', KEYS[1], 'cur', 'meas', 'tcut', 'wmax')
local cur, meas, tcut = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
if not cur or not tonumber(f[4]) then return 0 end
local ticket = tonumber(ARGV[2])
if tcut and ticket < tcut then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rmin, ceiling = tonumber(ARGV[6]), tonumber(ARGV[7])
local sent = math.min(cur, meas or cur)
if ceiling > 0 then sent = math.min(sent, ceiling) end
sent = math.max(rmin, sent)
local after = math.max(rmin, sent * tonumber(ARGV[4]))
-- The cubic restarts when the cool-down ends, from beta x the rate that was throttled.
redis.call('HSET', KEYS[1], 'cur', tostring(after), 'wmax', tostring(sent),
  'tev', tostring(now + hold), 'k', ARGV[5], 'ss', 0, 'tcut', now, 'tp', now + hold)
return math.floor(after * 1000)
"""
