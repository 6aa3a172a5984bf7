#!/usr/bin/env bash
# Goal 4 of BENCHMARKS.md: cached `GET /v1/media/{id}` on the release kiln-api against a bare
# axum handler doing one Redis GET of the same cached value (api/examples/bare_redis.rs), under
# the same wrk load (2 threads, 64 connections), in one run. Usage: bench/api.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-15}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
# The limiter on, with a rate no run reaches: what it costs, not what it refuses. A second API
# process below runs with it off.
export KILN_RATE_LIMIT="${KILN_RATE_LIMIT:-1000000/s:1000000}"
# shellcheck source=bench/lib.sh
. bench/lib.sh
cargo build -q --release -p kiln-api --example bare_redis

id=$(upload "$photo" | json_field id)
wait_ready "$id"
curl -fsS "http://$KILN_API_ADDR/v1/media/$id" -H "Authorization: Bearer $key" >/dev/null
cache_key="$name:media:$id"
redis-cli exists "$cache_key" | grep -q 1 || { echo "the media is not cached" >&2; exit 1; }

KILN_RATE_LIMIT=0 KILN_API_ADDR=127.0.0.1:18482 KILN_METRICS_ADDR=127.0.0.1:0 "$target/kiln-api" &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:18482/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

"$target/examples/bare_redis" 127.0.0.1:18481 redis://127.0.0.1:6379 "$cache_key" >/dev/null &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:18481/v1/media/x" >/dev/null 2>&1 && break; sleep 0.1; done

load() {
  wrk -t2 -c64 -d"${seconds}s" --latency -H "Authorization: Bearer $key" "$1" |
    awk '/Requests\/sec/ {rps=$2} /^ +99%/ {p99=$2} END {print rps, p99}'
}
# The cache entry must outlive the run: refresh its TTL first.
redis-cli expire "$cache_key" 3600 >/dev/null
read -r kiln_rps kiln_p99 < <(load "http://$KILN_API_ADDR/v1/media/$id")
read -r off_rps off_p99 < <(load "http://127.0.0.1:18482/v1/media/$id")
read -r bare_rps bare_p99 < <(load "http://127.0.0.1:18481/v1/media/$id")
echo "kiln-api cached GET, rate limit on:  ${kiln_rps} req/s, p99 ${kiln_p99}"
echo "kiln-api cached GET, rate limit off: ${off_rps} req/s, p99 ${off_p99}"
echo "bare axum + Redis:                   ${bare_rps} req/s, p99 ${bare_p99}"
python3 -c "print(f'limiter cost: on/off {float(\"$kiln_rps\") / float(\"$off_rps\"):.3f}x')"
python3 -c "print(f'ratio {float(\"$kiln_rps\") / float(\"$bare_rps\"):.2f}x (goal >= 0.6x, p99 < 10 ms)')"
