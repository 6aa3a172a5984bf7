#!/usr/bin/env bash
# What signing variant URLs costs the cached `GET /v1/media/{id}` (BENCHMARKS.md, "Signed
# URLs"): the release kiln-api of this tree against the one of an earlier revision (default
# 7b00a60, the last without signing), each answering the same cached media on its own port and
# Redis namespace, under the same wrk load (2 threads, 64 connections), alternating, in one run.
# Usage: bench/signing.sh [seconds] [runs] [revision]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
runs="${2:-3}"
revision="${3:-7b00a60}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
# shellcheck source=bench/lib.sh
. bench/lib.sh
cargo build -q --release --example sign_view_bench -p kiln-api
"$target/examples/sign_view_bench" 300000

# The earlier revision's kiln-api, built in a worktree of its own (its own target directory,
# so the tree's binaries stay as they are).
old_tree="${TMPDIR:-/tmp}/kiln-signing-$revision"
[ -d "$old_tree" ] || git worktree add -q --detach "$old_tree" "$revision"
(cd "$old_tree" && CARGO_TARGET_DIR="$old_tree/target" cargo build -q --release -p kiln-api)
old_api="$old_tree/target/release/kiln-api"

id=$(upload "$photo" | json_field id)
wait_ready "$id"
KILN_NAMESPACE="${name}_old" KILN_API_ADDR=127.0.0.1:18483 KILN_METRICS_ADDR=127.0.0.1:0 "$old_api" &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:18483/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
for port in 18480 18483; do
  curl -fsS "http://127.0.0.1:$port/v1/media/$id" -H "Authorization: Bearer $key" >/dev/null
done
for cache_key in "$name:media:$id" "${name}_old:media:$id"; do
  redis-cli expire "$cache_key" 3600 | grep -q 1 || { echo "$cache_key is not cached" >&2; exit 1; }
done

load() {
  wrk -t2 -c64 -d"${seconds}s" --latency -H "Authorization: Bearer $key" "$1" |
    awk '/Requests\/sec/ {rps=$2} /^ +99%/ {p99=$2} END {print rps, p99}'
}
for run in $(seq "$runs"); do
  read -r new_rps new_p99 < <(load "http://127.0.0.1:18480/v1/media/$id")
  read -r old_rps old_p99 < <(load "http://127.0.0.1:18483/v1/media/$id")
  python3 -c "print(f'run $run: signed {float(\"$new_rps\"):,.0f} req/s (p99 $new_p99), unsigned ($revision) {float(\"$old_rps\"):,.0f} req/s (p99 $old_p99): {float(\"$new_rps\") / float(\"$old_rps\"):.3f}x')"
done
