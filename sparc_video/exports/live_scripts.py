"""The Lua scripts that write an export's live copy in Redis (record, event stream, lease),
each one round trip and atomic; `records.ExportStore` runs them after (or,
for a create, inside) the PostgreSQL transaction that makes the change durable."""

# The Redis part of a create (record, event, the job on the queue) in one step. ARGV: each
# write as its number of words followed by the words. Keys are named in ARGV: the service runs
# on one Redis (no cluster), and one script serves every shape of create.
CREATE = """
local i = 1
while i <= #ARGV do
  local words = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + words))
  i = i + words + 1
end
return 1
"""

# A durable change, after PostgreSQL committed it. KEYS: record, events, lease. ARGV: revision,
# record, kind, time, stream length, seconds to keep a finished export (0: unfinished), lease
# action ('acquire', 'release' or ''), token, lease ms. (Recording holds are PostgreSQL rows.)
# The record and its event are written only over an older revision (a late writer never undoes
# a newer one); the lease action always applies: PostgreSQL already chose this writer.
PUT = """
local stored = redis.call('GET', KEYS[1])
local newer = true
if stored then newer = (cjson.decode(stored)['revision'] or 0) < tonumber(ARGV[1]) end
if newer then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
             'kind', ARGV[3], 'time', ARGV[4], 'record', ARGV[2])
  if tonumber(ARGV[6]) > 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[6])
    redis.call('EXPIRE', KEYS[2], ARGV[6])
  end
end
if ARGV[7] == 'acquire' then
  redis.call('SET', KEYS[3], ARGV[8], 'PX', ARGV[9])
elseif ARGV[7] == 'release' and redis.call('GET', KEYS[3]) == ARGV[8] then
  redis.call('DEL', KEYS[3])
end
return newer and 1 or 0
"""

# A progress change: the record is replaced only if it is still the value the writer read.
# KEYS: record, events. ARGV: value read, new value, kind, time, stream length.
PROGRESS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
           'kind', ARGV[3], 'time', ARGV[4], 'record', ARGV[2])
return 1
"""
