#!/usr/bin/env bash
# Goals 4 (upload memory) and 5 (worker memory) of BENCHMARKS.md, with release binaries against
# the local Postgres, Redis and RabbitMQ, on a private database, RabbitMQ vhost, Redis namespace
# and storage directory that are removed afterwards.
#   - the worker's peak RSS while two 16 MP photos are processed at once;
#   - how much the API's RSS grows while it streams a 20 MB upload.
# Usage: bench/memory.sh   (needs rabbitmqctl, curl, psql, and bench/kernel.sh's venv for pyvips)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

# Warm up (first connections, pools), so the peak below is the jobs' own.
wait_ready "$(upload "$photo" | json_field id)"
worker_before=$(rss "$worker")
upload "$(unique_copy "$photo")" >"$storage/a.json" & first=$!
upload "$(unique_copy "$photo")" >"$storage/b.json" & second=$!
wait "$first" "$second"
for answer in a b; do
  wait_ready "$(json_field id <"$storage/$answer.json")"
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
