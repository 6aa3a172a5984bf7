#!/usr/bin/env bash
# Goals 4 (upload memory) and 5 (worker memory) of BENCHMARKS.md, with release binaries against
# the local Postgres, Redis and RabbitMQ, on a private database, RabbitMQ vhost, Redis namespace
# and storage directory that are removed afterwards.
#   - the worker's peak RSS while two 16 MP photos are processed at once;
#   - how much the API's RSS grows while it streams a 20 MB upload.
# Usage: bench/memory.sh   (needs rabbitmqctl, curl, psql, and bench/kernel.sh's venv for pyvips)
set -euo pipefail
cd "$(dirname "$0")/.."
export SQLX_OFFLINE=true
target="${CARGO_TARGET_DIR:-target}/release"
cargo build -q --release --bins

name="kiln_bench_$$"
storage=$(mktemp -d)
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$name"
export AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$name"
export KILN_NAMESPACE="$name" KILN_STORAGE_URL="$storage" KILN_API_ADDR=127.0.0.1:18480
export KILN_WORKER_CONCURRENCY=2 KILN_CPU_THREADS=2 KILN_MAX_UPLOAD_BYTES=52428800
export RUST_LOG=warn LOG_FORMAT=json
pids=()
cleanup() {
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rabbitmqctl -q delete_vhost "$name" >/dev/null 2>&1 || true
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
  redis-cli --scan --pattern "$name:*" | xargs -r redis-cli del >/dev/null
  rm -rf "$storage"
}
trap cleanup EXIT
rabbitmqctl -q add_vhost "$name" >/dev/null
rabbitmqctl -q set_permissions -p "$name" guest ".*" ".*" ".*" >/dev/null
"$target/kiln-api" migrate >/dev/null
key=$("$target/kiln-api" keys create --name bench --scopes media 2>/dev/null | tail -n1)

KILN_METRICS_ADDR=127.0.0.1:0 "$target/kiln-api" & pids+=($!); api=$!
KILN_METRICS_ADDR=127.0.0.1:0 "$target/kiln-worker" & pids+=($!); worker=$!
for _ in $(seq 100); do curl -fsS "http://$KILN_API_ADDR/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
upload() { curl -fsS -X POST "http://$KILN_API_ADDR/v1/media" -H "Authorization: Bearer $key" --data-binary "@$1"; }
wait_ready() {
  for _ in $(seq 600); do
    status=$(curl -fsS "http://$KILN_API_ADDR/v1/media/$1" -H "Authorization: Bearer $key" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    [ "$status" = ready ] && return 0
    [ "$status" = failed ] && { echo "media $1 failed" >&2; return 1; }
    sleep 0.1
  done
  return 1
}

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
photo="$(cd .. && pwd)/shared/bench-images/photo-16mp.jpg"
# Warm up (first connections, pools), so the peak below is the jobs' own.
wait_ready "$(upload "$photo" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
worker_before=$(rss "$worker")
upload "$photo" >"$storage/a.json" & first=$!
upload "$photo" >"$storage/b.json" & second=$!
wait "$first" "$second"
for answer in a b; do
  wait_ready "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <"$storage/$answer.json")"
done
echo "worker: rss before ${worker_before} kB, peak (VmHWM) $(hwm "$worker") kB with two 16 MP jobs in flight (goal: <= 200 MB)"

# A 20 MB incompressible PNG (noise), streamed to the API.
big="$storage/big.png"
"${BENCH_VENV:-$HOME/.cache/kiln-bench-venv}/bin/python" -c "
import pyvips
pyvips.Image.gaussnoise(2600, 2600, sigma=80).cast('uchar').bandjoin([pyvips.Image.gaussnoise(2600, 2600, sigma=80).cast('uchar')]*2).pngsave('$big', compression=1)"
api_before=$(rss "$api")
upload "$big" >/dev/null
echo "api: rss before ${api_before} kB, peak (VmHWM) $(hwm "$api") kB around a $(($(stat -c %s "$big") / 1048576)) MB upload (goal: growth < 16 MB)"
