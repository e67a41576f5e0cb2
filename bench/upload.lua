-- upload.lua: wrk uploads one key per request through the portal API, each
-- to a new app (the same .p8 may serve many apps, but one Key ID per
-- material within an app), so every request is a real upload: .p8 parse,
-- seal, one durable write transaction with its audit event.
-- Environment (bench/run.sh sets them):
--   BENCH_TOKEN   a portal token
--   BENCH_P8_FILE the .p8 file
--   BENCH_PREFIX  app id prefix, unique per run (apps PREFIX<thread><n>)
-- Prints the same RESULT line as post.lua.
local token = os.getenv("BENCH_TOKEN") or ""
local f = assert(io.open(os.getenv("BENCH_P8_FILE") or "", "r"))
local p8 = f:read("*a")
f:close()
local prefix = os.getenv("BENCH_PREFIX") or "com.bench.up"
local n = 0
local tid = 0
local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

local function json_string(s)
   s = s:gsub('\\', '\\\\'):gsub('"', '\\"'):gsub('\n', '\\n'):gsub('\r', '\\r')
   return '"' .. s .. '"'
end

local p8_json = json_string(p8)

function request()
   n = n + 1
   local body = '{"key_id":"ABC1234567","team_id":"DEF1234567","p8":' ..
      p8_json .. '}'
   local path = string.format("/v1/apps/%s%d.%d/keys", prefix, tid, n)
   return wrk.format("POST", path, {
      ["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json",
   }, body)
end

function done(summary, latency, requests)
   local errors = summary.errors.connect + summary.errors.read +
      summary.errors.write + summary.errors.timeout
   io.write(string.format(
      "RESULT req_s=%.1f p50_us=%d p99_us=%d requests=%d errors=%d non2xx=%d\n",
      summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(99),
      summary.requests, errors, summary.errors.status))
end
