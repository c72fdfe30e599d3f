"""The Lua scripts of the Redis ledger backend: each runs atomically in Redis (no other
client's command interleaves), checks every value it reads before it writes anything,
and sweeps holds whose lease ended."""

from __future__ import annotations

__all__ = ["CLOSE", "FIELDS", "HOLDS", "PRELUDE", "RELEASE_STALE", "RESERVE", "SCRIPTS", "TOTALS"]

FIELDS = ("s:usd", "s:in", "s:out", "s:calls", "f:usd", "f:in", "f:out", "f:calls")

# Shared by every script: KEYS[1] counters, KEYS[2] holds. `counters()` returns the eight
# counters as numbers, or nil and what is wrong; `sweep()` lapses holds whose lease ended
# and forgets lapsed ones kept for a second lease, returning an error string or nil. It
# checks everything before it writes anything. Numbers are integers below 2**53, so Lua's
# doubles hold them exactly; HINCRBY counts in 64-bit integers.
PRELUDE = """
local names = {'usd', 'in', 'out', 'calls'}
local fields = {'s:usd', 's:in', 's:out', 's:calls', 'f:usd', 'f:in', 'f:out', 'f:calls'}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function fmt(n) return string.format('%.0f', n) end
local function counters()
  local c = redis.call('HMGET', KEYS[1], unpack(fields))
  local n = {}
  for i = 1, 8 do
    if c[i] and not string.match(c[i], '^%d+$') then
      return nil, 'counter ' .. fields[i] .. ' of ' .. KEYS[1] .. ' is not an integer >= 0'
    end
    n[i] = tonumber(c[i]) or 0
  end
  return n
end
local function parse(held)
  local r = {}
  for v in string.gmatch(held, '%S+') do
    if not string.match(v, '^%d+$') then return nil end
    r[#r + 1] = v
  end
  if #r == 4 then r[5], r[6], r[7] = '0', '0', '0' end
  if #r ~= 7 or (r[7] ~= '0' and r[7] ~= '1') then return nil end
  return r
end
local function due(r)
  local created, expires = tonumber(r[5]), tonumber(r[6])
  if expires == 0 then return nil end
  if r[7] == '1' then return 2 * expires - created end
  return expires
end
local function take(r)
  for i = 1, 4 do
    if r[i] ~= '0' then redis.call('HINCRBY', KEYS[1], 'f:' .. names[i], '-' .. r[i]) end
  end
end
local function holds()
  local all = redis.call('HGETALL', KEYS[2])
  local out = {}
  for j = 1, #all, 2 do
    local r = parse(all[j + 1])
    if not r then return nil, 'hold ' .. all[j] .. ' of ' .. KEYS[2] .. ' is malformed' end
    out[#out + 1] = {all[j], r}
  end
  return out
end
local function sweep()
  local _, bad = counters()
  if bad then return bad end
  local nxt = redis.call('HGET', KEYS[1], 'next')
  if not nxt then return nil end
  if not string.match(nxt, '^%d+$') then return 'field next of ' .. KEYS[1] .. ' is malformed' end
  if tonumber(nxt) > now then return nil end
  local all, bad2 = holds()
  if not all then return bad2 end
  local soonest = nil
  for _, h in ipairs(all) do
    local id, r = h[1], h[2]
    local d = due(r)
    if d and d <= now and r[7] == '0' then
      take(r)
      r[7] = '1'
      redis.call('HSET', KEYS[2], id, table.concat(r, ' '))
      d = due(r)
    end
    if d and d <= now then
      redis.call('HDEL', KEYS[2], id)
    elseif d and (soonest == nil or d < soonest) then
      soonest = d
    end
  end
  if soonest then
    redis.call('HSET', KEYS[1], 'next', fmt(soonest))
  else
    redis.call('HDEL', KEYS[1], 'next')
  end
  return nil
end
local bad = sweep()
if bad then return redis.error_reply('ERR budgets: ' .. bad) end
"""

# ARGV[1] id, ARGV[2..5] asked, ARGV[6..9] limits ('' = unlimited), ARGV[10] ttl in ms
# ('' = none), ARGV[11] lease in ms. Returns {0, 0} or {limit index, used}.
RESERVE = (
    PRELUDE
    + """
local c = counters()
for i = 1, 4 do
  if ARGV[5 + i] ~= '' then
    local used = c[i] + c[4 + i]
    if used + tonumber(ARGV[1 + i]) > tonumber(ARGV[5 + i]) then
      return {i, used}
    end
  end
end
local expires = now + tonumber(ARGV[11])
local held = ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5] .. ' ' ..
             fmt(now) .. ' ' .. fmt(expires) .. ' 0'
if redis.call('HSETNX', KEYS[2], ARGV[1], held) == 0 then
  return redis.error_reply('ERR reservation id already in use')
end
for i = 1, 4 do
  if ARGV[1 + i] ~= '0' then redis.call('HINCRBY', KEYS[1], 'f:' .. names[i], ARGV[1 + i]) end
end
local nxt = redis.call('HGET', KEYS[1], 'next')
if not nxt or tonumber(nxt) > expires then redis.call('HSET', KEYS[1], 'next', fmt(expires)) end
if ARGV[10] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[10])
  redis.call('PEXPIRE', KEYS[2], ARGV[10])
end
return {0, 0}
"""
)

# ARGV[1] id, ARGV[2] 'settle' or 'release', ARGV[3..5] actual usd, in, out.
# Returns 1, or 0 when the reservation is not there (settled, released or unknown).
# A lapsed hold left in flight already: settling it only records the spend.
CLOSE = (
    PRELUDE
    + """
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held then return 0 end
local r = parse(held)
if not r then return redis.error_reply('ERR budgets: hold ' .. ARGV[1] .. ' is malformed') end
redis.call('HDEL', KEYS[2], ARGV[1])
if r[7] == '0' then take(r) end
if ARGV[2] == 'settle' then
  local spent = {ARGV[3], ARGV[4], ARGV[5], r[4]}
  for i = 1, 4 do
    if spent[i] ~= '0' then redis.call('HINCRBY', KEYS[1], 's:' .. names[i], spent[i]) end
  end
end
return 1
"""
)

# Returns the eight counters (nil where unset).
TOTALS = (
    PRELUDE
    + """
return redis.call('HMGET', KEYS[1], unpack(fields))
"""
)

# Returns {now_ms, id, "usd in out calls created expires lapsed", id, ...}.
HOLDS = (
    PRELUDE
    + """
local hs, err = holds()
if not hs then return redis.error_reply('ERR budgets: ' .. err) end
local out = {fmt(now)}
for _, h in ipairs(hs) do
  out[#out + 1] = h[1]
  out[#out + 1] = table.concat(h[2], ' ')
end
return out
"""
)

# ARGV[1] minimum age in ms. Drops those holds (taking live ones off in flight); returns
# their ids.
RELEASE_STALE = (
    PRELUDE
    + """
local hs, err = holds()
if not hs then return redis.error_reply('ERR budgets: ' .. err) end
local gone = {}
for _, h in ipairs(hs) do
  local r = h[2]
  if now - tonumber(r[5]) >= tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[2], h[1])
    if r[7] == '0' then take(r) end
    gone[#gone + 1] = h[1]
  end
end
return gone
"""
)

SCRIPTS = (RESERVE, CLOSE, TOTALS, HOLDS, RELEASE_STALE)
