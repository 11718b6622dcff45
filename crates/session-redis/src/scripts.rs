//! The Lua scripts: each runs atomically on the server, reads the time from the server (`TIME`)
//! and, for writes, checks the fencing token before it changes anything.
//!
//! Lua runs a script to the end without interleaving other clients, but it does not undo the
//! writes of a script that fails half-way: so every check (the fence) comes before the first
//! write, and the writes themselves cannot fail on keys of the types we created (the server's
//! out-of-memory refusal happens before a script starts). What reaches the AOF is kept whole by
//! committing each write with one command (see [`WRITE`]).

use std::sync::LazyLock;

use redis::Script;

/// Milliseconds since the epoch by the server's clock, as a Lua number (exact below 2^53).
const NOW: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// `KEYS[1]` the lease; `ARGV[1]` holder, `ARGV[2]` ttl in ms.
/// Returns `{1, token, ttl_ms}` when granted, `{0, holder, ms_left}` when held.
pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}
local l = redis.call('HMGET', KEYS[1], 'token', 'holder', 'expires')
local expires = tonumber(l[3]) or 0
if l[2] and l[2] ~= '' and expires > now then
  return {{0, l[2], expires - now}}
end
local token = (tonumber(l[1]) or 0) + 1
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'token', token, 'holder', ARGV[1], 'expires', now + ttl)
return {{1, token, ttl}}"
    ))
});

/// `KEYS[1]` the lease; `ARGV[1]` token, `ARGV[2]` ttl in ms. Returns 1 when renewed (also an
/// expired lease nobody took), 0 when the token is not the current holder's.
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}
local l = redis.call('HMGET', KEYS[1], 'token', 'holder')
if tonumber(l[1]) ~= tonumber(ARGV[1]) or not l[2] or l[2] == '' then
  return 0
end
redis.call('HSET', KEYS[1], 'expires', now + tonumber(ARGV[2]))
return 1"
    ))
});

/// `KEYS[1]` the lease; `ARGV[1]` token. Ends the lease when the token is current.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}
local l = redis.call('HMGET', KEYS[1], 'token', 'holder')
if tonumber(l[1]) == tonumber(ARGV[1]) and l[2] and l[2] ~= '' then
  redis.call('HSET', KEYS[1], 'holder', '', 'expires', now)
  return 1
end
return 0"
    ))
});

/// One fenced write of a session, committed by **one** write command.
///
/// `KEYS`: lease, the session hash, its scratch hash. `ARGV[1]` the token; `ARGV[2]` `1` to
/// replace the whole session (save, delete), else `0`; then the number of field/value pairs to
/// set (an empty value is a tombstone: the field was removed) and the pairs; then the number of
/// peer operations and the operations, sorted by bucket: each is the bucket (2 bytes), the peer's
/// key (9 bytes) and its value (nothing: remove the peer). A bucket is read once, changed in a
/// Lua table and written back.
///
/// Why one command: the AOF holds a script's effects as a `MULTI`/`EXEC` block, and a server
/// killed while writing that block was seen (Redis 7.0.15, `tests/crash.rs`) to bring part of it
/// back after later restarts. A single command is whole or absent. So a write is one `HSET` of
/// the session hash when it fits in one call (up to 3,000 fields), else it is staged in the
/// scratch hash (copied from the session unless replacing it) and committed by one `RENAME`:
/// whatever part of the staging comes back only touches the scratch hash, which the next large
/// write empties first and a load never reads.
///
/// Returns 1 when written, 0 (and writes nothing) when the token is not the current holder's.
pub(crate) static WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local l = redis.call('HMGET', KEYS[1], 'token', 'holder')
if tonumber(l[1]) ~= tonumber(ARGV[1]) or not l[2] or l[2] == '' then
  return 0
end
local replace = ARGV[2] == '1'
local i = 3
local n = tonumber(ARGV[i]); i = i + 1
local args = {}
for j = 0, 2 * n - 1 do args[#args + 1] = ARGV[i + j] end
i = i + 2 * n
n = tonumber(ARGV[i]); i = i + 1
local last = i + n - 1
while i <= last do
  local field = 'p:' .. string.sub(ARGV[i], 1, 2)
  local recs = {}
  local blob = redis.call('HGET', KEYS[2], field)
  if blob then
    local pos, len = 1, #blob
    while pos <= len do
      local key = string.sub(blob, pos, pos + 8)
      local vlen = struct.unpack('<I4', blob, pos + 9)
      recs[key] = string.sub(blob, pos + 13, pos + 12 + vlen)
      pos = pos + 13 + vlen
    end
  end
  while i <= last and 'p:' .. string.sub(ARGV[i], 1, 2) == field do
    local op = ARGV[i]
    local key = string.sub(op, 3, 11)
    if #op > 11 then recs[key] = string.sub(op, 12) else recs[key] = nil end
    i = i + 1
  end
  local out = {}
  for key, v in pairs(recs) do out[#out + 1] = key .. struct.pack('<I4', #v) .. v end
  args[#args + 1] = field
  args[#args + 1] = table.concat(out)
end
if not replace and #args <= 6000 then
  if #args > 0 then redis.call('HSET', KEYS[2], unpack(args)) end
  return 1
end
redis.call('DEL', KEYS[3])
if not replace then redis.call('COPY', KEYS[2], KEYS[3]) end
for j = 1, #args, 4000 do
  redis.call('HSET', KEYS[3], unpack(args, j, math.min(j + 3999, #args)))
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('RENAME', KEYS[3], KEYS[2])
else
  redis.call('DEL', KEYS[2])
end
return 1",
    )
});

/// Every script, to load on a new connection.
pub(crate) fn all() -> [&'static Script; 4] {
    [&ACQUIRE, &RENEW, &RELEASE, &WRITE]
}
