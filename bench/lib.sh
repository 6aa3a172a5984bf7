# Shared by the bench/ scripts: release binaries against the local Postgres, Redis and RabbitMQ,
# on a private database, RabbitMQ vhost, Redis namespace and storage directory, all removed on
# exit. Source it from a script that has cd'ed to the repository root.
export SQLX_OFFLINE=true
target="${CARGO_TARGET_DIR:-target}/release"
cargo build -q --release --bins

name="kiln_bench_$$"
storage=$(mktemp -d)
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$name"
export AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$name"
export KILN_NAMESPACE="$name" KILN_STORAGE_URL="$storage" KILN_API_ADDR=127.0.0.1:18480
export KILN_WORKER_CONCURRENCY="${KILN_WORKER_CONCURRENCY:-2}" KILN_CPU_THREADS="${KILN_CPU_THREADS:-2}"
export KILN_MAX_UPLOAD_BYTES=52428800
export RUST_LOG="${BENCH_RUST_LOG:-warn}" LOG_FORMAT=json
# Benchmarks measure throughput, not the limiter: every limit is off unless a script sets one.
export KILN_RATE_LIMIT="${KILN_RATE_LIMIT:-0}" KILN_AUTH_FAILURE_LIMIT="${KILN_AUTH_FAILURE_LIMIT:-0}"
export KILN_EMAIL_DAILY_LIMIT="${KILN_EMAIL_DAILY_LIMIT:-0}" KILN_TENANT_UPLOADS_IN_FLIGHT="${KILN_TENANT_UPLOADS_IN_FLIGHT:-0}"
export KILN_MAX_UPLOADS_IN_FLIGHT="${KILN_MAX_UPLOADS_IN_FLIGHT:-0}"
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
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
upload() { curl -fsS -X POST "http://$KILN_API_ADDR/v1/media" -H "Authorization: Bearer $key" --data-binary "@$1"; }
# A copy of JPEG $1 with a comment of its own: Kiln shares the files of identical uploads (no
# second job), so a benchmark that means to process a photo again uploads a unique copy.
unique_copy() {
  local copy
  copy=$(mktemp -p "$storage" unique-XXXXXX.jpg)
  python3 - "$1" "$copy" <<'PY'
import sys, uuid
body = open(sys.argv[1], "rb").read()
text = f"kiln-bench {uuid.uuid4()}".encode()
open(sys.argv[2], "wb").write(body[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + body[2:])
PY
  echo "$copy"
}
wait_ready() {
  local status
  for _ in $(seq 600); do
    status=$(curl -fsS "http://$KILN_API_ADDR/v1/media/$1" -H "Authorization: Bearer $key" | json_field status)
    [ "$status" = ready ] && return 0
    [ "$status" = failed ] && { echo "media $1 failed" >&2; return 1; }
    sleep 0.1
  done
  return 1
}
photo="$(cd .. && pwd)/shared/bench-images/photo-16mp.jpg"
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
