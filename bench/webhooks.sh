#!/usr/bin/env bash
# Webhook delivery throughput: N deliveries to one endpoint on a local receiver that answers 204
# at once (api/examples/webhook_sink.rs), through the whole path (job rows, the scheduler's
# relay, RabbitMQ, the worker's signed HTTP client, the log's writes). The deliveries are
# inserted as the outbox would write them (one transaction), so the number is Kiln's delivery
# rate, not an upload's.
# Usage: bench/webhooks.sh [deliveries] [endpoint concurrency]
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-2000}"
export KILN_WEBHOOK_ENDPOINT_CONCURRENCY="${2:-4}"
export KILN_WEBHOOK_ALLOW_NETS=127.0.0.0/8
# shellcheck source=bench/lib.sh
. bench/lib.sh
cargo build -q --release -p kiln-api --example webhook_sink
"${CARGO_TARGET_DIR:-target}/release/examples/webhook_sink" 127.0.0.1:18483 & pids+=($!)
KILN_METRICS_ADDR=127.0.0.1:0 "$target/kiln-scheduler" & pids+=($!)
for _ in $(seq 100); do curl -fsS http://127.0.0.1:18483/count >/dev/null 2>&1 && break; sleep 0.1; done
admin=$("$target/kiln-api" keys create --name bench-hooks --scopes webhooks 2>/dev/null | tail -n1)
endpoint=$(curl -fsS -X POST "http://$KILN_API_ADDR/v1/webhooks" -H "Authorization: Bearer $admin" \
  -H 'content-type: application/json' \
  -d '{"url": "http://127.0.0.1:18483/hook", "events": ["*"]}' | json_field id)

started=$(date +%s.%N)
psql -q -h 127.0.0.1 -U postgres -d "$name" -v ON_ERROR_STOP=1 <<SQL
WITH ids AS (SELECT gen_random_uuid() AS id FROM generate_series(1, $count)),
     jobs AS (INSERT INTO jobs (id, tenant, kind, payload, max_attempts)
              SELECT id, 'bench-hooks', 'webhook', jsonb_build_object('delivery_id', id), 8 FROM ids
              RETURNING id)
INSERT INTO webhook_deliveries (id, endpoint_id, tenant, event_type, body)
SELECT id, '$endpoint', 'bench-hooks', 'media.ready',
       '{"type":"media.ready","timestamp":"2026-12-04T00:00:00.000Z","data":{"id":"' || id || '"}}'
FROM jobs;
SQL
until [ "$(curl -fsS http://127.0.0.1:18483/count)" -ge "$count" ]; do sleep 0.05; done
ended=$(date +%s.%N)
pending=$(psql -qtA -h 127.0.0.1 -U postgres -d "$name" -c \
  "SELECT count(*) FROM webhook_deliveries WHERE status <> 'succeeded'")
# The last log writes may trail the last request by a moment.
for _ in $(seq 100); do
  [ "$pending" = 0 ] && break
  sleep 0.1
  pending=$(psql -qtA -h 127.0.0.1 -U postgres -d "$name" -c \
    "SELECT count(*) FROM webhook_deliveries WHERE status <> 'succeeded'")
done
python3 - "$count" "$started" "$ended" "$pending" "$KILN_WEBHOOK_ENDPOINT_CONCURRENCY" <<'PY'
import sys
count, started, ended, pending, per_endpoint = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
seconds = ended - started
print(f"{count} deliveries (endpoint concurrency {per_endpoint}) in {seconds:.2f} s: "
      f"{count / seconds:.0f}/s; not recorded as succeeded afterwards: {pending}")
PY
