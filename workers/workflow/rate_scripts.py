"""The two Lua scripts of the tenant throttle (:mod:`workers.workflow.throttle`).

Both run atomically in Redis on one hash per tenant, so every worker on every machine shares
one pacing state. ``TAKE`` is the only round trip of an ordinary call: it checks the tenant
cool-down, brings the adaptive rate up to date (growth, and the usage Graph reported), and
reserves a slot. ``THROTTLED`` runs only after a 429: it extends the cool-down and cuts the
rate, once per congestion event.

State fields: ``tok``/``ts`` the token bucket; ``cur`` the rate in force (calls/s);
``wmax``/``tev``/``k``/``ss`` the growth curve (the rate at the last event, when it began, the
cubic's K, slow start or not); ``bid``/``b0``..``b4`` the calls Graph answered (not 429), in
quarter-second buckets, as the workers report them (the measured rate: the last second's,
like Graph's window); ``s0``..``s4`` the slots reserved in the same buckets (the rate sent);
``vb``/``vt`` the callers told to come back (the queue past the horizon) and when that was
counted; ``lim``/``lt``/``ut`` the limit implied by ``x-ms-throttle-limit-percentage``
(smoothed) and when it was last confirmed / reported; ``tpl`` when the rate reached the target
share of it (the plateau); ``mg``/``mt`` the learned margin below that target and when it was
set; ``tcut`` the last 429 cut; ``q``/``qt`` the 429s of about the last second (decaying).
"""

from __future__ import annotations

LAST_SECOND = """
-- Calls counted in quarter-second buckets (bucket i in arr[i % 5 + 1], the newest is bid) over
-- exactly the second before now, the oldest bucket pro rata.
local function last_second(arr, bid, now)
  if not bid then return 0 end
  local id = math.floor(now / 250)
  local n = 0
  for i = id - 4, id do
    if i <= bid and i > bid - 5 then
      local v = arr[i % 5 + 1]
      if i == id - 4 then v = v * (1 - (now - id * 250) / 250) end
      n = n + v
    end
  end
  return n
end
"""

# KEYS: state hash, cool-down key.
# ARGV: 1 adaptive (0/1), 2 ceiling calls/s (0: none), 3 burst, 4 max_wait ms (-1: none),
#       5 usage reported since the last take (fraction of the limit, -1: none),
#       6 start, 7 min, 8 max calls/s, 9 target usage, 10 release ms (a limit estimate with no
#       report for this long is dropped), 11 slow-start doubling ms,
#       12 cubic C (scale-free), 13 burst seconds, 14 idle ttl ms, 15 horizon s,
#       16 calls this worker saw answered (not 429) since its last take,
#       17 estimate time constant ms, 18 longest come-back wait ms (queue past the horizon),
#       19 half-life ms of the learned margin below the target usage, 20 the bucket's burst in
#       the slow start (calls), 21 the least room below the reported limit (calls/s).
# Returns {kind, wait ms, ticket (server ms when reserved), rate x 1000, paced}; kind 0 = slot
# reserved, 1 = nothing reserved, ask again after the wait (cool-down, or the queue is longer
# than the horizon), 2 = slot further than max_wait (nothing reserved); paced 1 once the rate
# follows a signal from Graph (a 429 or its usage reports), 0 in the slow start.
TAKE = (
    LAST_SECOND
    + """
local cool = redis.call('PTTL', KEYS[2])
if cool > 0 then return {1, cool, 0, 0, 1} end
local adaptive = ARGV[1] == '1'
local ceiling = tonumber(ARGV[2])
if not adaptive and ceiling <= 0 then return {0, 0, 0, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local burst = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local usage = tonumber(ARGV[5])
local start, rmin, rmax = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
if ceiling > 0 then rmax = math.min(rmax, ceiling) end
local f = redis.call('HMGET', KEYS[1], 'tok', 'ts', 'cur', 'wmax', 'tev', 'k', 'ss', 'lim', 'lt',
  'bid', 'b0', 'b1', 'b2', 'b3', 'ut', 's0', 's1', 's2', 's3', 'vb', 'vt', 'mg', 'mt', 'tpl', 'b4',
  's4')
local cur = tonumber(f[3])
local wmax, tev, k, ss = tonumber(f[4]), tonumber(f[5]), tonumber(f[6]), tonumber(f[7])
local lim, lt, bid = tonumber(f[8]), tonumber(f[9]), tonumber(f[10])
local b, s = {}, {}
for i, j in ipairs({11, 12, 13, 14, 25}) do b[i] = tonumber(f[j]) or 0 end
for i, j in ipairs({16, 17, 18, 19, 26}) do s[i] = tonumber(f[j]) or 0 end
local sent = 0
if not adaptive then
  cur = ceiling
elseif not cur or not wmax then
  cur = math.max(rmin, math.min(start, rmax))
  wmax, tev, k, ss, lt = cur, now, 0, 1, now
end
local ts = tonumber(f[2]) or now
local dt = math.max(0, now - ts)
if adaptive then
  -- In the slow start a few calls may go together: one request's calls in a row never wait
  -- for a slot there (nothing is known to protect yet; the rate grows only while calls queue).
  -- Not under a configured ceiling: that is a limit someone knows, a burst over it is a 429.
  local least = 1
  if ss == 1 and ceiling <= 0 then least = tonumber(ARGV[20]) end
  burst = math.max(least, math.min(burst, math.floor(cur * tonumber(ARGV[13]))))
end
local tokens = math.min(burst, (tonumber(f[1]) or burst) + dt * cur / 1000)
if adaptive then
  -- Calls Graph answered (not 429), as the workers report them, in quarter-second buckets.
  local id = math.floor(now / 250)
  -- The same buckets count the slots reserved (the rate sent), which caps the slow start.
  if not bid or id - bid >= 5 then
    b, s = {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}
  else
    for i = bid + 1, id do b[i % 5 + 1], s[i % 5 + 1] = 0, 0 end
  end
  bid = id
  b[id % 5 + 1] = b[id % 5 + 1] + tonumber(ARGV[16])
  -- answered in exactly the last second, as Graph's window counts them (a shorter span scaled
  -- up read a rising rate high: the limit estimate overshot in the slow start)
  local meas = last_second(b, id, now)
  local span = now - (id - 3) * 250
  sent = (s[id % 5 + 1] + s[(id - 1) % 5 + 1] + s[(id - 2) % 5 + 1] + s[(id - 3) % 5 + 1]) * 1000
    / span
  -- Grow only while callers queue for slots: an idle tenant teaches nothing about its limit.
  if tokens >= 1 then tev = math.min(now, tev + dt) end
  if usage > 0 and meas > 0 then
    -- Graph says the last window used `usage` of the limit: the limit is about meas / usage.
    -- Smoothed over time, not per report (at 200 calls/s a per-report average is noise):
    -- symmetric: an asymmetric average of a noisy reading is biased, and a busy worker reports
    -- its answered calls late (a low reading that is not the limit). A real drop shows in the
    -- usage (> 1) and in 429s, which cut the rate at once.
    local est = meas / usage
    if lim then
      local tau = tonumber(ARGV[17])
      local a = math.min(1, math.max(0.01, (now - (tonumber(f[15]) or now)) / tau))
      lim = lim + a * (est - lim)
    else
      lim = est
    end
    lt = now
    redis.call('HSET', KEYS[1], 'ut', now)
  elseif lim and now - lt > tonumber(ARGV[10]) then
    lim = nil  -- no report for a while although we sent: the limit rose, probe again
    redis.call('HDEL', KEYS[1], 'tpl')  -- off the plateau
  end
  local e = math.max(0, now - tev) / 1000
  local rate
  if ss == 1 then
    rate = wmax * math.pow(2, e * 1000 / tonumber(ARGV[11]))
    -- as the AWS SDKs (measured_tx_rate): <= 2 x what was sent, not what was answered (with
    -- slow answers, the answered rate lags the sent one by a round trip: the start crawled)
    rate = math.min(rate, math.max(start, 2 * sent))
  else
    local x = e - k
    rate = wmax * (1 + tonumber(ARGV[12]) * x * x * x)
  end
  -- the target share of the reported limit, less the margin the 429s at it taught (halving
  -- every ARGV[19] ms: the margin a tenant needs moves with its load)
  local target = tonumber(ARGV[9])
  local mg = tonumber(f[22])
  if mg then target = target - mg * math.pow(0.5, (now - tonumber(f[23])) / tonumber(ARGV[19])) end
  -- and at least ARGV[21] calls/s below the limit: calls reach Graph a few tens of ms early or
  -- late, which costs about the same number of calls of a 1 s window at any limit (a share
  -- alone left a 20 calls/s tenant one call of room)
  local plateau = lim and math.min(target * lim, lim - tonumber(ARGV[21]))
  if lim and rate > plateau then
    -- at the target share of the reported limit: hold there (the cubic's plateau)
    rate = plateau
    wmax, tev, k, ss = rate, now, 0, 0
    -- when the rate reached this plateau: only a 429 for a call sent from it teaches a margin
    if not f[24] then redis.call('HSET', KEYS[1], 'tpl', now) end
  end
  cur = math.max(rmin, math.min(rate, rmax))
end
tokens = tokens - 1
local wait = 0
if tokens < 0 then wait = math.ceil(-tokens * 1000 / cur) end
local kind = 0
local horizon = math.max(tonumber(ARGV[15]), 2 / cur) * 1000
local vb = tonumber(f[20]) or 0
if adaptive and wait > horizon then
  -- Reserve no further ahead than the horizon, so that a new rate applies within it. Come back
  -- when the queue should be half that long, behind the callers already told to come back
  -- (vb, drained at the rate): each waiting caller asks about once per turn, not 4 times a
  -- second (the asks are what cost the CPU with 1,000 callers in line).
  local cap = tonumber(ARGV[18])
  vb = math.max(0, vb - math.max(0, now - (tonumber(f[21]) or now)) * cur / 1000)
  kind, wait = 1, math.ceil(math.min(cap, wait - horizon / 2 + vb * 1000 / cur))
  vb = math.min(vb + 1, cur * cap / 1000)
  redis.call('HSET', KEYS[1], 'vb', tostring(vb), 'vt', now)
elseif max_wait >= 0 and wait > max_wait then
  kind = 2
else
  redis.call('HSET', KEYS[1], 'tok', tostring(tokens), 'ts', now)
  if adaptive then s[bid % 5 + 1] = s[bid % 5 + 1] + 1 end
end
if adaptive then
  redis.call('HSET', KEYS[1], 'cur', tostring(cur), 'wmax', tostring(wmax), 'tev', tostring(tev),
    'k', tostring(k), 'ss', ss, 'lt', lt, 'bid', bid, 'b0', b[1], 'b1', b[2], 'b2', b[3],
    'b3', b[4], 'b4', b[5], 's0', s[1], 's1', s[2], 's2', s[3], 's3', s[4], 's4', s[5])
  if lim then
    redis.call('HSET', KEYS[1], 'lim', tostring(lim))
  else
    redis.call('HDEL', KEYS[1], 'lim')
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[14])
local paced = 0
if adaptive and (ss == 0 or lim) then paced = 1 end
if kind == 0 then return {0, wait, now, math.floor(cur * 1000), paced} end
return {kind, wait, 0, math.floor(cur * 1000), paced}
"""
)

# KEYS: state hash, cool-down key.
# ARGV: 1 hold ms (the cool-down, from Retry-After; 0: none), 2 ticket of the throttled call
#       (server ms when its slot was reserved; 0: unknown), 3 cut (0/1), 4 beta, 5 cubic K s,
#       6 min calls/s, 7 ceiling (0: none), 8 beta when the limit estimate is fresh (Graph
#       reported its usage within ARGV[10] ms: an isolated 429 at a known limit), 9 cubic K s
#       for that cut, 10 freshness ms, 11 isolation ms (no other 429 this long before),
#       12 margin step calls/s (a 429 at a known limit lowers the target rate by this), 13
#       largest margin (share of the limit), 14 margin half-life ms, 15 the share of the limit
#       that 429s in about ARGV[11] ms may reach and still be sparse (the edge, not congestion).
# Returns {the rate x 1000 after the cut, 0 when not cut (no adaptive state), -1 when the call
# was sent before the last cut (the same congestion event: cut once); 1 when every worker is
# held (the cool-down was set), 0 when only the throttled call waits}.
THROTTLED = (
    LAST_SECOND
    + """
local hold = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local f = redis.call('HMGET', KEYS[1], 'cur', 'wmax', 'tcut', 'bid', 'b0', 'b1', 'b2', 'b3', 'ut',
  'mg', 'mt', 'tpl', 'lim', 'q', 'qt', 'b4')
local cur, tcut, bid = tonumber(f[1]), tonumber(f[3]), tonumber(f[4])
local ut, known = tonumber(f[9]), tonumber(f[13])
local ticket = tonumber(ARGV[2])
-- The same congestion event as the last cut: the call was reserved before it.
local same = tcut ~= nil and ticket <= tcut
-- The 429s of about the last ARGV[11] ms (a count decaying with that time constant).
local iso = tonumber(ARGV[11])
local q = (tonumber(f[14]) or 0) * math.exp(-math.max(0, now - (tonumber(f[15]) or now)) / iso)
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'q', tostring(q + 1), 'qt', now) end
-- A sparse 429 at a known limit: Graph reported its usage a moment ago, and the other 429s of
-- the last moment were at most ARGV[15] of the limit, or one (a pair of calls sent together
-- passes, a third holds). The throttled call waits its Retry-After; the others go on at the
-- slightly cut rate (a 1 s stop of the whole tenant for a call over the edge would cost R
-- calls). Any other 429 holds every worker for its Retry-After.
local isolated = ARGV[3] == '1' and ut ~= nil and now - ut <= tonumber(ARGV[10])
  and q <= math.max(1, tonumber(ARGV[15]) * (known or 0))
local held = 0
if hold > 0 and not isolated then
  held = 1
  if redis.call('PTTL', KEYS[2]) < hold then redis.call('SET', KEYS[2], '1', 'PX', hold) end
end
if ARGV[3] ~= '1' then return {0, held} end
if not cur or not tonumber(f[2]) then return {0, held} end
if same then return {-1, held} end
local rmin, ceiling = tonumber(ARGV[6]), tonumber(ARGV[7])
-- what Graph admitted in the last second is the best guess of the limit just hit
local sent = cur
local b = {}
for i, j in ipairs({5, 6, 7, 8, 16}) do b[i] = tonumber(f[j]) or 0 end
local n = last_second(b, bid, now)
if n > 0 then sent = math.min(cur, n) end
if ceiling > 0 then sent = math.min(sent, ceiling) end
sent = math.max(rmin, sent)
local beta, k = tonumber(ARGV[4]), ARGV[5]
local lim = sent
if ut and now - ut <= tonumber(ARGV[10]) then
  -- Graph told us its usage a moment ago: the limit is known and this 429 is the edge of
  -- it, not congestion of unknown size. A small cut, a quicker climb back, and the estimate
  -- from the usage reports kept.
  beta, k = tonumber(ARGV[8]), ARGV[9]
  lim = known or sent
  -- A 429 for a call sent at the target share of a known limit: that share is too close for
  -- this tenant (bunched calls, a limit that moved). Aim a step lower from now on (the margin
  -- decays). Not for a call sent before the rate reached it (the slow start's overshoot, the
  -- climb back after a cut): those say nothing about the share.
  local tpl = tonumber(f[12])
  if tpl and ticket >= tpl then
    local mg = tonumber(f[10]) or 0
    if mg > 0 then mg = mg * math.pow(0.5, (now - tonumber(f[11])) / tonumber(ARGV[14])) end
    mg = math.min(tonumber(ARGV[13]), mg + tonumber(ARGV[12]) / lim)
    redis.call('HSET', KEYS[1], 'mg', tostring(mg), 'mt', now)
  end
end
redis.call('HDEL', KEYS[1], 'tpl')  -- the cut leaves the plateau
if held == 0 then hold = 0 end
local after = math.max(rmin, sent * beta)
-- The cubic restarts when the cool-down ends, from beta x the rate that was throttled, and
-- climbs back to it in K seconds; the limit estimate is that rate too (but see above).
redis.call('HSET', KEYS[1], 'cur', tostring(after), 'wmax', tostring(sent),
  'tev', tostring(now + hold), 'k', k, 'ss', 0, 'tcut', now, 'lim', tostring(lim),
  'lt', now + hold)
return {math.floor(after * 1000), held}
"""
)
