-- wrk script for scripts/bench: changes nothing about the requests (wrk's
-- own URL and -H headers are sent); at the end prints one line the script
-- reads: requests, req/s, latency percentiles (ms) and wrk's error counts
-- (non2xx: answers with a status of 400 or more, as wrk counts them).
function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format(
    "SOUK_WRK requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f non2xx=%d connect_err=%d read_err=%d write_err=%d timeout_err=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout))
end
