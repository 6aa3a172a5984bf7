#!/usr/bin/env bash
# Goal 2 of BENCHMARKS.md: images per second through the whole system (upload → queue → worker →
# storage → ready) against the resize kernel's own rate on the same cores, in one run.
# Release binaries on a private database, vhost, Redis namespace and storage directory.
# Usage: bench/pipeline.sh [images] [upload concurrency]
set -euo pipefail
cd "$(dirname "$0")/.."
images="${1:-24}"
concurrency="${2:-4}"
cores=$(nproc)
# Jobs in flight beyond the CPU threads keep the cores busy while a job waits on storage or
# Postgres; the CPU pool still runs only one render per core.
export KILN_WORKER_CONCURRENCY="${KILN_WORKER_CONCURRENCY:-$((cores * 2))}"
export KILN_CPU_THREADS="${KILN_CPU_THREADS:-$cores}"
# shellcheck source=bench/lib.sh
. bench/lib.sh

# The kernel alone on every core (the services above are idle meanwhile).
kernel=$(cargo bench -q -p kiln-worker --bench kernel -- "$photo" 4 "$cores" 2>/dev/null | grep images_per_s)
echo "kernel on $cores threads: $kernel"

wait_ready "$(upload "$photo" | json_field id)" # warm-up
pipeline=$(python3 bench/pipeline_load.py "http://$KILN_API_ADDR" "$key" "$photo" "$images" "$concurrency")
echo "pipeline (worker concurrency $KILN_WORKER_CONCURRENCY, cpu threads $KILN_CPU_THREADS): $pipeline"
rate() { sed -n 's/.*images_per_s=\([0-9.]*\).*/\1/p' <<<"$1"; }
python3 -c "print(f'ratio {$(rate "$pipeline")} / {$(rate "$kernel")} = {$(rate "$pipeline") / $(rate "$kernel"):.2f}x (goal >= 0.8x)')"
