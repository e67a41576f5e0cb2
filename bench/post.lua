-- post.lua: wrk sends every request as a POST with the same headers and
-- body, taken from the environment (bench/run.sh sets them):
--   BENCH_TOKEN  bearer token (no Authorization header if empty)
--   BENCH_BODY   request body (none if empty)
--   BENCH_CTYPE  Content-Type of the body (default application/json)
-- and, after the run, prints one machine-readable line:
--   RESULT req_s=... p50_us=... p99_us=... requests=... errors=... non2xx=...
wrk.method = "POST"
local token = os.getenv("BENCH_TOKEN") or ""
local body = os.getenv("BENCH_BODY") or ""
if token ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. token
end
if body ~= "" then
   wrk.body = body
   wrk.headers["Content-Type"] = os.getenv("BENCH_CTYPE") or "application/json"
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
